"""Flax-only checkpoints, converted without jax or flax, against embeddings Flax itself computed.

The fixtures in tests/fixtures/flax/ were saved by transformers 4.46.3 + flax 0.8.5 with
scripts/make_flax_fixtures.py (run by hand; see its docstring), each with golden.npz: the exact
model inputs and the unnormalised image and text features the Flax model returned.

Tolerances: float32 checkpoints 1e-4 absolute on features of magnitude ~2 (observed ~1e-6).
The bf16 checkpoint decodes exactly, and the converted model runs its weights in float32: it
matches Flax's float32 run of the same weights (`*_fp32` in golden.npz) within 1e-4, and Flax's
own bf16 run within 2e-2 (observed 6.6e-3: with bf16 parameters Flax does the text embedding
lookups in bf16).
"""

from __future__ import annotations

import json
import shutil
import sys
from functools import cache
from pathlib import Path

import msgpack
import numpy as np
import pytest
import torch
from PIL import Image

from vtde_bench.cli import main
from vtde_bench.errors import UserError
from vtde_bench.encoders.flax import is_flax_only, load_flax_model, read_flax_params
from vtde_bench.encoders import HFDualEncoder, load_model

FIXTURES = Path(__file__).parent / "fixtures" / "flax"
NAMES = ("vtde-vit-bert", "vtde-vit-bert-sharded", "clip-bf16", "hybrid-clip")
CLASSES = {"vtde-vit-bert": "VisionTextDualEncoderModel", "vtde-vit-bert-sharded": "VisionTextDualEncoderModel",
           "clip-bf16": "CLIPModel", "hybrid-clip": "VisionTextDualEncoderModel"}
ATOL = 1e-4
BF16_COMPUTE_ATOL = 2e-2


@cache
def golden(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / name / "golden.npz") as data:
        return dict(data)


@cache
def loaded(name: str) -> HFDualEncoder:
    return load_model(FIXTURES / name, device="cpu")


def features(model, g: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Unnormalised features of the golden inputs, fed exactly as Flax got them."""
    text_inputs = {k: torch.from_numpy(g[k]) for k in ("input_ids", "attention_mask", "token_type_ids") if k in g}
    with torch.inference_mode():
        image = model.get_image_features(pixel_values=torch.from_numpy(g["pixel_values"])).pooler_output
        text = model.get_text_features(**text_inputs).pooler_output
    return image.numpy(), text.numpy()


def expected(g: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Flax's features of the weights as the converted model runs them (float32)."""
    return g.get("image_embeds_fp32", g["image_embeds"]), g.get("text_embeds_fp32", g["text_embeds"])


def normalised(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("name", NAMES)
def test_converted_model_reproduces_flax_features(name):
    encoder, g = loaded(name), golden(name)
    assert type(encoder.model).__name__ == CLASSES[name]
    image, text = features(encoder.model, g)
    image_expected, text_expected = expected(g)
    np.testing.assert_allclose(image, image_expected, rtol=0, atol=ATOL)
    np.testing.assert_allclose(text, text_expected, rtol=0, atol=ATOL)
    # The golden rows differ by far more than the tolerance, so a converter that ignored part of
    # its input or a layer could not pass by accident.
    for emb in (image_expected, text_expected):
        rows = normalised(emb)
        assert min(np.abs(rows[i] - rows[j]).max() for i in range(len(rows)) for j in range(i)) > 100 * ATOL


def test_bf16_checkpoint_is_decoded_from_bf16_and_matches_flax_bf16_run():
    params = read_flax_params(FIXTURES / "clip-bf16")
    assert {t.dtype for t in params.values()} == {torch.bfloat16}
    g = golden("clip-bf16")
    image, text = features(loaded("clip-bf16").model, g)
    np.testing.assert_allclose(image, g["image_embeds"], rtol=0, atol=BF16_COMPUTE_ATOL)
    np.testing.assert_allclose(text, g["text_embeds"], rtol=0, atol=BF16_COMPUTE_ATOL)


def test_sharded_and_chunked_checkpoint_reads_like_the_single_file():
    single, sharded = read_flax_params(FIXTURES / "vtde-vit-bert"), read_flax_params(FIXTURES / "vtde-vit-bert-sharded")
    index = json.loads((FIXTURES / "vtde-vit-bert-sharded" / "flax_model.msgpack.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert single.keys() == sharded.keys()
    assert all(torch.equal(single[k], sharded[k]) for k in single)


@pytest.mark.parametrize("name", NAMES)
def test_pipeline_through_processor_matches_golden(name):
    """Images and texts through the loaded processor (hybrid-clip: the CLIPImageProcessor built for it)."""
    encoder, g = loaded(name), golden(name)
    images = [Image.open(FIXTURES / name / str(file)).convert("RGB") for file in g["images"]]
    image_expected, text_expected = expected(g)
    np.testing.assert_allclose(encoder.encode_images(images).numpy(), normalised(image_expected), rtol=0, atol=ATOL)
    np.testing.assert_allclose(encoder.encode_texts([str(t) for t in g["texts"]]).numpy(), normalised(text_expected), rtol=0, atol=ATOL)


def test_provenance_and_no_jax():
    encoder = loaded("hybrid-clip")
    assert encoder.info.extra["weights_format"] == "flax"
    assert encoder.info.model_type == "vision-text-dual-encoder"
    assert type(encoder.model.vision_model).__name__ == "CLIPVisionModel"
    assert "jax" not in sys.modules and "flax" not in sys.modules


def test_is_flax_only(tmp_path):
    assert all(is_flax_only(FIXTURES / name) for name in NAMES)
    shutil.copytree(FIXTURES / "clip-bf16", tmp_path / "both")
    (tmp_path / "both" / "model.safetensors").write_bytes(b"")
    assert not is_flax_only(tmp_path / "both")  # PyTorch weights win: the ordinary loader reads them
    assert not is_flax_only(tmp_path)


# ----------------------------------------------------------------------------- every parameter used and filled


def doctored(tmp_path: Path, edit) -> Path:
    """A copy of the ViT+BERT fixture whose msgpack tree was edited (array leaves kept as flax encoded them)."""
    folder = tmp_path / "doctored"
    shutil.copytree(FIXTURES / "vtde-vit-bert", folder)
    tree = msgpack.unpackb((folder / "flax_model.msgpack").read_bytes(), raw=False)
    edit(tree)
    (folder / "flax_model.msgpack").write_bytes(msgpack.packb(tree))
    return folder


def test_extra_flax_parameter_is_an_error_naming_it(tmp_path):
    def add(tree):
        tree["text_model"]["pooler"]["extra"] = {"kernel": tree["text_model"]["pooler"]["dense"]["kernel"]}

    with pytest.raises(UserError, match="no place for: text_model/pooler/extra/kernel"):
        load_flax_model(doctored(tmp_path, add))


def test_missing_flax_parameter_is_an_error_naming_it(tmp_path):
    def drop(tree):
        del tree["text_model"]["encoder"]["layer"]["1"]["output"]["LayerNorm"]["scale"]

    with pytest.raises(UserError, match=r"does not provide: text_model\.encoder\.layer\.1\.output\.LayerNorm\.weight"):
        load_flax_model(doctored(tmp_path, drop))


def test_wrong_shape_is_an_error_naming_it(tmp_path, capsys):
    def swap(tree):
        tree["text_projection"]["kernel"] = tree["text_model"]["embeddings"]["position_embeddings"]["embedding"]

    folder = doctored(tmp_path, swap)
    assert main(["convert", str(folder), "--to", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "shapes do not fit" in err and "text_projection/kernel" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["doctored"]


def test_hybrid_clip_without_tokenizer_files_is_an_error_not_an_all_unknown_tokenizer(tmp_path):
    """transformers 5 builds a tokenizer of special tokens only, silently, when a folder has no tokenizer files."""
    folder = tmp_path / "h"
    shutil.copytree(FIXTURES / "hybrid-clip", folder, ignore=shutil.ignore_patterns("tokenizer*", "vocab*", "special*"))
    with pytest.raises(UserError, match="only its 5 special tokens .*put the text encoder's tokenizer files"):
        load_model(folder, device="cpu")


def test_unsupported_model_type_and_lfs_pointer(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(FIXTURES / "clip-bf16", folder)
    (folder / "flax_model.msgpack").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n")
    with pytest.raises(UserError, match="git lfs pull"):
        load_flax_model(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "t5"}))
    with pytest.raises(UserError, match="model_type 't5' are not supported"):
        load_model(folder, device="cpu")


# ----------------------------------------------------------------------------- vtde-bench convert


@pytest.mark.parametrize("name", ["vtde-vit-bert-sharded", "clip-bf16", "hybrid-clip"])
def test_convert_writes_a_pytorch_checkpoint_with_the_same_embeddings(name, tmp_path):
    from transformers import AutoModel, AutoProcessor

    out = tmp_path / "pt"
    assert main(["convert", str(FIXTURES / name), "--to", str(out)]) == 0
    files = {p.name for p in out.iterdir()}
    assert "model.safetensors" in files and not any(f.startswith("flax_model") for f in files)
    assert [p.name for p in tmp_path.iterdir()] == ["pt"]  # no temporary folder left beside it

    model = AutoModel.from_pretrained(out)
    assert type(model).__name__ == CLASSES[name]
    assert AutoProcessor.from_pretrained(out) is not None
    g = golden(name)
    image, text = features(model.eval(), g)
    np.testing.assert_allclose(image, expected(g)[0], rtol=0, atol=ATOL)
    np.testing.assert_allclose(text, expected(g)[1], rtol=0, atol=ATOL)
    # The ordinary loader reads it; same tensors, so the same weights fingerprint as the Flax folder.
    reloaded = load_model(out, device="cpu")
    assert "weights_format" not in reloaded.info.extra
    assert reloaded.info.weights_fingerprint == loaded(name).info.weights_fingerprint
    assert torch.allclose(reloaded.encode_texts(["a red circle"]), loaded(name).encode_texts(["a red circle"]), atol=ATOL)


def test_convert_refuses_an_existing_folder(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    assert main(["convert", str(FIXTURES / "clip-bf16"), "--to", str(tmp_path / "out")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["convert", str(FIXTURES / "clip-bf16"), "--to", str(tmp_path / "out"), "--overwrite"]) == 0
    assert not (tmp_path / "out" / "keep.txt").exists() and (tmp_path / "out" / "model.safetensors").is_file()
    assert main(["convert", str(tmp_path / "out"), "--to", str(tmp_path / "again")]) == 2  # not Flax any more
    # Tests run as root, so an unwritable place is one under a regular file.
    assert main(["convert", str(FIXTURES / "clip-bf16"), "--to", str(tmp_path / "out" / "config.json" / "x")]) == 2
    assert "cannot write there" in capsys.readouterr().err


# ----------------------------------------------------------------------------- vtde-bench run


@pytest.mark.parametrize("name", NAMES)
def test_run_evaluates_a_flax_folder_end_to_end(name, cards, tmp_path):
    out = tmp_path / "results"
    args = ["run", "--workers", "0", "--model", str(FIXTURES / name), "--tasks", *map(str, cards), "--output-dir", str(out)]
    assert main(args) == 0
    (folder,) = out.iterdir()
    for task in ("colours", "captions"):
        result = json.loads((folder / f"{task}.json").read_text())
        assert result["model"]["weights_format"] == "flax"
        assert result["model"]["weights_fingerprint"] == loaded(name).info.weights_fingerprint
        assert 0.0 <= result["main_score"] <= 1.0
