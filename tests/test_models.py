"""The transformers adapter: real tiny checkpoints loaded from folders, embeddings checked against the model's own forward."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

import helpers
from vtde_bench import imaging
from vtde_bench.errors import RunFailure, UserError
from vtde_bench.encoders import ProtocolEncoder, as_dual_encoder, load_model, weights_fingerprint

IMAGES = [helpers.colour_image(c, seed=i) for i, c in enumerate(["red", "blue", "green"])]
TEXTS = ["a red cat", "the big blue dog on a car", "green"]


@pytest.mark.parametrize("fixture", ["tiny_vtde", "tiny_clip", "tiny_siglip"])
def test_embeddings_match_the_models_own_forward(fixture, request):
    """Guards the adapter's reading of transformers 5 output objects and the processors."""
    from transformers import AutoModel, AutoProcessor

    folder = request.getfixturevalue(fixture)
    encoder = load_model(folder, device="cpu")
    model = AutoModel.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    padding = "max_length" if fixture == "tiny_siglip" else True
    text_inputs = processor.tokenizer(TEXTS, padding=padding, truncation=True, max_length=encoder.max_text_length, return_tensors="pt")
    with torch.no_grad():
        out = model(**text_inputs, **processor.image_processor(images=IMAGES, return_tensors="pt"))
    expected_img = torch.nn.functional.normalize(out.image_embeds, dim=-1)
    expected_txt = torch.nn.functional.normalize(out.text_embeds, dim=-1)
    torch.testing.assert_close(encoder.encode_images(IMAGES), expected_img, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(encoder.encode_texts(TEXTS), expected_txt, atol=1e-5, rtol=1e-5)
    assert encoder.info.embedding_dim == expected_img.shape[1]
    # Texts differ, so their embeddings must too (the tiny-CLIP pooling trap makes them equal).
    assert torch.cdist(expected_txt, expected_txt).triu(1).max() > 1e-3


def test_siglip_texts_are_padded_to_max_length(tiny_siglip):
    """SigLIP pools the last position: padding to the longest text would change the embeddings."""
    encoder = load_model(tiny_siglip, device="cpu")
    assert encoder.pad_to_max_length and encoder.max_text_length == 16
    inputs = encoder.text_inputs(["a red cat"])
    assert inputs["input_ids"].shape[1] == 16
    alone = encoder.encode_texts(["a red cat"])
    with_long = encoder.encode_texts(["a red cat", "the big blue dog on a car with a white bird"])[:1]
    torch.testing.assert_close(alone, with_long, atol=1e-5, rtol=1e-5)


def test_texts_longer_than_the_model_are_truncated(tiny_clip):
    encoder = load_model(tiny_clip, device="cpu")
    long_text = " ".join(["red cat"] * 100)
    assert encoder.text_inputs([long_text])["input_ids"].shape[1] == encoder.max_text_length == 32
    assert encoder.encode_texts([long_text]).shape == (1, 16)


def test_embeddings_are_unit_length_float32(tiny_vtde):
    encoder = load_model(tiny_vtde, device="cpu")
    emb = encoder.encode_images(IMAGES)
    assert emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))


def test_weights_fingerprint_is_content_based(tiny_vtde, tmp_path):
    from transformers import AutoModel

    a = AutoModel.from_pretrained(tiny_vtde)
    a.save_pretrained(tmp_path / "copy")
    b = AutoModel.from_pretrained(tmp_path / "copy")
    assert weights_fingerprint(a.state_dict()) == weights_fingerprint(b.state_dict())
    with torch.no_grad():
        next(b.parameters()).view(-1)[0] += 1e-3
    assert weights_fingerprint(a.state_dict()) != weights_fingerprint(b.state_dict())


def test_slug_is_folder_name_and_fingerprint_prefix(tiny_vtde):
    encoder = load_model(tiny_vtde, device="cpu")
    assert encoder.info.slug == f"tiny-vtde-{encoder.info.weights_fingerprint[:8]}"
    hub = encoder.info.__class__(path="openai/clip-vit-base-patch32", is_local=False)
    assert hub.slug == "openai__clip-vit-base-patch32"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing", "no such folder"),
        (lambda p: (p / "file.bin").write_bytes(b"x") and p / "file.bin", "is a file"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no config.json"),
    ],
)
def test_bad_model_paths_are_user_errors(tmp_path, make, message):
    with pytest.raises(UserError, match=message):
        load_model(make(tmp_path))


def test_text_only_model_is_rejected(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)).save_pretrained(tmp_path)
    with pytest.raises(UserError, match="not a vision-text dual encoder|no image processor"):
        load_model(tmp_path)


def test_unloadable_weights_are_a_user_error(tiny_vtde, tmp_path):
    import shutil

    shutil.copytree(tiny_vtde, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="weights failed to load"):
        load_model(tmp_path / "m")


def test_unknown_model_type_is_a_user_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-model"}))
    with pytest.raises(UserError, match="config"):
        load_model(tmp_path)


def test_nan_embeddings_fail_and_suggest_fp32(tiny_vtde):
    encoder = load_model(tiny_vtde, device="cpu")
    with torch.no_grad():
        encoder.model.visual_projection.weight.fill_(float("nan"))
    with pytest.raises(RunFailure, match="fp32"):
        encoder.encode_images(IMAGES)


class _Fixed:
    """Any object with encode_images/encode_texts is a dual encoder."""

    def encode_images(self, images: list[Image.Image]):
        return torch.ones(len(images), 4)

    def encode_texts(self, texts: list[str]):
        return torch.ones(len(texts), 3)


def test_protocol_encoder_checks_widths():
    with pytest.raises(UserError, match="width"):
        ProtocolEncoder(_Fixed())


def test_as_dual_encoder_rejects_other_objects():
    with pytest.raises(UserError, match="cannot evaluate"):
        as_dual_encoder(object())


def test_as_dual_encoder_takes_a_loaded_model_with_processor(tiny_clip):
    from transformers import AutoModel, AutoProcessor

    encoder = as_dual_encoder(AutoModel.from_pretrained(tiny_clip), processor=AutoProcessor.from_pretrained(tiny_clip), device="cpu")
    reference = load_model(tiny_clip, device="cpu")
    assert encoder.info.weights_fingerprint == reference.info.weights_fingerprint
    torch.testing.assert_close(encoder.encode_images(IMAGES), reference.encode_images(IMAGES))


@pytest.mark.parametrize("fixture", ["tiny_vtde", "tiny_clip", "tiny_siglip"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_agrees_with_fp32(fixture, precision, request):
    """Autocast embeddings stay within cosine 0.999 of fp32 (bf16 keeps 8 mantissa bits; seen here: >= 0.99996)."""
    folder = request.getfixturevalue(fixture)
    reference = load_model(folder, device="cpu", precision="fp32")
    mixed = load_model(folder, device="cpu", precision=precision)
    assert mixed.precision == precision
    for encode in ("encode_images", "encode_texts"):
        inputs = IMAGES if encode == "encode_images" else TEXTS
        a, b = getattr(reference, encode)(inputs), getattr(mixed, encode)(inputs)
        assert b.dtype == torch.float32  # compared in fp32 whatever the compute precision
        assert (a * b).sum(-1).min() > 0.999


def test_auto_precision_is_fp32_on_cpu(tiny_vtde):
    assert load_model(tiny_vtde, device="cpu").precision == "fp32"


def test_out_of_memory_halves_the_batch_and_remembers(tiny_vtde, monkeypatch):
    """CUDA cannot run here, so the model's forward raises CUDA's own OOM error above 3 images."""
    encoder = load_model(tiny_vtde, device="cpu")
    reference = encoder.encode_images(IMAGES * 3)
    original = encoder.model.get_image_features

    def limited(pixel_values, **kwargs):
        if pixel_values.shape[0] > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(pixel_values=pixel_values, **kwargs)

    monkeypatch.setattr(encoder.model, "get_image_features", limited)
    torch.testing.assert_close(encoder.encode_images(IMAGES * 3), reference)
    assert encoder.max_batch == 2  # 9 → 4 → 2

    def never_fits(pixel_values, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(encoder.model, "get_image_features", never_fits)
    with pytest.raises(RunFailure, match="out of GPU memory"):
        encoder.encode_images(IMAGES)


@pytest.mark.parametrize("fixture", ["tiny_vtde", "tiny_clip", "tiny_siglip"])
def test_batched_preprocessing_matches_the_checkpoints_processor(fixture, request):
    """The reference is the processor transformers 5 loads by default (the torchvision-backed class)."""
    from transformers import AutoProcessor

    from vtde_bench.imaging import decode_image

    folder = request.getfixturevalue(fixture)
    encoder = load_model(folder, device="cpu")
    assert encoder.batched_images is not None and encoder.info.extra["image_preprocessing"] == "batched"
    processor = AutoProcessor.from_pretrained(folder).image_processor
    assert any(c.__name__ == "TorchvisionBackend" for c in type(processor).__mro__)  # not the PIL fallback
    images = [decode_image(helpers.png_bytes(helpers.colour_image(c, seed=i, size=s)))
              for i, (c, s) in enumerate([("red", 32), ("blue", 57), ("green", 20), ("white", 100)])]
    images.append(Image.new("RGB", (90, 40), (10, 200, 30)))
    ours = encoder.image_inputs(images)["pixel_values"]
    reference = processor(images=images, return_tensors="pt")["pixel_values"]
    assert (ours - reference).abs().max() <= imaging.TOLERANCE
    with torch.no_grad():
        a = encoder.embed_image_inputs({"pixel_values": ours})
        b = encoder.embed_image_inputs({"pixel_values": reference})
    text = encoder.encode_texts(TEXTS)
    assert torch.equal((a @ text.T).argmax(1), (b @ text.T).argmax(1))  # identical top-1


def test_folder_without_tokenizer_files_is_refused(tiny_vtde, tmp_path):
    """transformers 5 silently builds a special-tokens-only tokenizer there; every metric would sit at chance."""
    import shutil

    shutil.copytree(tiny_vtde, tmp_path / "m")
    for name in ("vocab.txt", "tokenizer.json"):
        (tmp_path / "m" / name).unlink(missing_ok=True)
    with pytest.raises(UserError, match="special tokens|tokenizer"):
        load_model(tmp_path / "m")


def test_batched_preprocessing_takes_decoded_arrays_with_the_same_result(tiny_clip):
    """The workers hand the batched path (H, W, 3) uint8 tensors from decode_image_array: same pixels, same inputs."""
    from vtde_bench.imaging import decode_image, decode_image_array

    encoder = load_model(tiny_clip, device="cpu")
    blobs = [helpers.png_bytes(helpers.colour_image(c, seed=i, size=s)) for i, (c, s) in enumerate([("red", 32), ("blue", 57)])]
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)).resize((70, 50), Image.BICUBIC)
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG")
    blobs.append(buffer.getvalue())
    assert isinstance(encoder.decode(blobs[-1]), torch.Tensor)
    from_arrays = encoder.image_inputs([decode_image_array(b) for b in blobs])["pixel_values"]
    from_pil = encoder.image_inputs([decode_image(b) for b in blobs])["pixel_values"]
    assert torch.equal(from_arrays, from_pil)


def test_processor_path_and_protocol_encoders_decode_to_pil(tiny_clip):
    from vtde_bench.imaging import decode_image

    encoder = load_model(tiny_clip, device="cpu")
    encoder.batched_images = None  # as for a processor the batched path does not reproduce
    blob = helpers.png_bytes(helpers.colour_image("red", seed=0))
    assert isinstance(encoder.decode(blob), Image.Image)

    class Plain:
        def encode_images(self, images):
            return torch.ones(len(images), 2)

        def encode_texts(self, texts):
            return torch.ones(len(texts), 2)

    assert isinstance(as_dual_encoder(Plain()).decode(blob), Image.Image)
    assert decode_image(blob).size == (32, 32)


def test_core_share_gives_the_forward_passes_the_spare_cores_only_while_input_bound():
    from vtde_bench.embedding import CoreShare

    before = torch.get_num_threads()
    with CoreShare(torch.device("cpu"), workers=1) as share:
        share.all_threads, share.few_threads = 4, 3  # as on a 4-core machine with one worker
        share.waited, share.computed = 2.0, 0.0
        assert share.threads() == 4  # no forward pass timed yet: the first wait is the workers starting
        share.waited, share.computed = 2.0, 1.0
        assert share.threads() == 3
        with share.computing():
            assert torch.get_num_threads() == 3
        share.waited, share.computed = 1.0, 2.0
        assert share.threads() == 4
        with share.computing():
            assert torch.get_num_threads() == 4
        share.all_threads = before
    assert torch.get_num_threads() == before  # restored on exit
    assert not CoreShare(torch.device("cuda"), workers=2).active  # a GPU's forward does not compete for cores
    assert not CoreShare(torch.device("cpu"), workers=0).active  # no workers: nothing to share


def test_core_share_counts_waiting_and_computing():
    import time

    from vtde_bench.embedding import CoreShare

    def slow_batches():
        for i in range(3):
            time.sleep(0.02)
            yield i

    with CoreShare(torch.device("cpu"), workers=1) as share:
        seen = []
        for batch in share.waiting_on(slow_batches()):
            with share.computing():
                seen.append(batch)
    assert seen == [0, 1, 2]
    assert share.waited >= 0.05 and share.computed < share.waited


def _save_tiny_convnext_vtde(folder):
    """A VisionTextDualEncoderModel with a convolutional (ConvNeXt) image tower."""
    from transformers import (BertConfig, ConvNextConfig, ConvNextImageProcessor, VisionTextDualEncoderConfig,
                              VisionTextDualEncoderModel, VisionTextDualEncoderProcessor)

    torch.manual_seed(0)
    tokenizer = helpers._bert_tokenizer(folder / "_tok")
    vision = ConvNextConfig(num_channels=3, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], patch_size=4, image_size=32)
    vision.hidden_size = vision.hidden_sizes[-1]  # the pooled width, which VisionTextDualEncoderModel reads from the config
    text = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    config = VisionTextDualEncoderConfig.from_vision_text_configs(vision, text, projection_dim=16)
    VisionTextDualEncoderModel(config=config).save_pretrained(folder)
    processor = VisionTextDualEncoderProcessor(image_processor=ConvNextImageProcessor(size={"shortest_edge": 32}), tokenizer=tokenizer)
    processor.save_pretrained(folder)
    return folder


def test_channels_last_is_chosen_for_convolutional_towers_on_cuda_only(tiny_vtde, tmp_path):
    from vtde_bench.encoders.device import wants_channels_last

    conv = load_model(_save_tiny_convnext_vtde(tmp_path / "conv"), device="cpu")
    vit = load_model(tiny_vtde, device="cpu")
    assert wants_channels_last(conv.model, torch.device("cuda"))
    assert not wants_channels_last(vit.model, torch.device("cuda"))  # one patch convolution
    assert not wants_channels_last(conv.model, torch.device("cpu"))
    assert not conv.channels_last and conv.cache_key("images")["channels_last"] is False


def test_channels_last_gives_the_same_embeddings(tmp_path):
    """The path CUDA takes for convolutional towers, run on the CPU: same numbers within float error."""
    folder = _save_tiny_convnext_vtde(tmp_path / "conv")
    plain = load_model(folder, device="cpu")
    fast = load_model(folder, device="cpu")
    fast.channels_last = True
    fast.model.to(memory_format=torch.channels_last)
    assert fast.cache_key("images") != plain.cache_key("images") and fast.cache_key("texts") == plain.cache_key("texts")
    a, b = plain.encode_images(IMAGES), fast.encode_images(IMAGES)
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.equal(plain.encode_texts(TEXTS), fast.encode_texts(TEXTS))


def test_texts_embedded_shortest_first_come_back_in_order(tiny_clip):
    from vtde_bench.embedding import embed_texts

    encoder = load_model(tiny_clip, device="cpu")
    texts = ["a big red dog near the small blue car in the tree", "cat", "the green house", "a", "dog on a car"] * 3
    together = embed_texts(encoder, texts, batch_size=4, chunk_rows=8)
    one_by_one = torch.cat([encoder.encode_texts([t]) for t in texts])
    assert torch.allclose(together, one_by_one, atol=1e-5)
    assert torch.allclose(together[:5], together[5:10], atol=1e-6)  # the same text, wherever it sits
    assert not torch.allclose(together[0], together[1], atol=1e-3)  # and different texts differ


def test_a_loaded_model_with_a_vocabulary_less_tokenizer_is_refused_too(tiny_clip, tmp_path):
    """The check load_model makes, made for a model and processor handed to the API as well."""
    from transformers import AutoProcessor, CLIPModel, CLIPProcessor

    image_processor = AutoProcessor.from_pretrained(tiny_clip).image_processor
    image_processor.save_pretrained(tmp_path / "p")
    (tmp_path / "p" / "config.json").write_text((tiny_clip / "config.json").read_text())
    broken = AutoProcessor.from_pretrained(tmp_path / "p")  # transformers 5 fills in a special-tokens-only tokenizer
    model = CLIPModel.from_pretrained(tiny_clip)
    assert isinstance(broken, CLIPProcessor)
    with pytest.raises(UserError, match="special tokens"):
        as_dual_encoder(model, processor=broken)
    with pytest.raises(UserError, match="without both an image processor and a tokenizer"):
        as_dual_encoder(model, processor=image_processor)


def test_an_absent_mps_device_is_a_user_error():
    """Issue #14 item 3: `--device mps` without MPS crashed in torch (exit 3); it is bad input, like --device cuda."""
    import torch

    from vtde_bench.encoders.device import resolve_device

    if torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    with pytest.raises(UserError, match="--device mps.*use --device cpu"):
        resolve_device("mps")


def test_the_weights_fingerprint_is_kept_under_the_identity_of_the_files(tmp_path, tiny_clip):
    """A rerun reads the fingerprint the cache holds for the same files; new weights (another mtime) are hashed again."""
    import os
    import shutil

    from vtde_bench.cache import EmbeddingCache
    from vtde_bench.encoders.load import load_model, weights_key

    folder = tmp_path / "model"
    shutil.copytree(tiny_clip, folder)
    cache = EmbeddingCache(tmp_path / "cache")
    first = load_model(str(folder), device="cpu", cache=cache).info.weights_fingerprint
    assert first == load_model(str(folder), device="cpu").info.weights_fingerprint  # the same value, hashed
    entry = cache.entry(weights_key(folder))
    assert entry.read_json("weights-fingerprint") == first
    entry.write_json("weights-fingerprint", "f" * 64)  # what a rerun finds there is what it uses: nothing rehashed
    assert load_model(str(folder), device="cpu", cache=cache).info.weights_fingerprint == "f" * 64
    weights = next(folder.glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # new weights, as far as it knows
    assert load_model(str(folder), device="cpu", cache=cache).info.weights_fingerprint == first
