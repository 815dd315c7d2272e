"""Make the golden Flax checkpoints in tests/fixtures/flax/ with the real Flax stack (run by hand only).

transformers 5 dropped Flax, so `vtde_bench.flax` reads Flax checkpoints without jax or flax.
These fixtures are what it is tested against: tiny, seeded, random-init checkpoints saved by a
transformers release that still had Flax, each with the embeddings the Flax model itself computed
for fixed inputs. Run it in a scratch virtual environment OUTSIDE the repository, never in the
project's environment (the tests must pass without jax and flax installed):

    python3 -m venv /tmp/flaxenv
    /tmp/flaxenv/bin/pip install transformers==4.46.3 flax==0.8.5 jax==0.4.30 jaxlib==0.4.30 \
        "numpy<2" pillow
    /tmp/flaxenv/bin/python scripts/make_flax_fixtures.py            # rewrites tests/fixtures/flax/

Exact versions the committed fixtures were made with: transformers 4.46.3, flax 0.8.5,
jax 0.4.30, jaxlib 0.4.30, numpy 1.26.4, tokenizers 0.20.3, msgpack 1.2.4, pillow 13.0.0,
optax 0.2.5 (Python 3.11, CPU). Newer flax/jax failed at FlaxVisionTextDualEncoderModel's init.

Fixtures (each folder: config.json, Flax weights, processor or tokenizer files, image-*.png,
golden.npz):

- `vtde-vit-bert`: `FlaxVisionTextDualEncoderModel`, tiny ViT + tiny BERT, float32, with a
  `VisionTextDualEncoderProcessor` (ViTImageProcessor + BertTokenizerFast).
- `vtde-vit-bert-sharded`: the same parameters saved with a small `max_shard_size`
  (`flax_model.msgpack.index.json` + shards) and with flax's array chunking forced on by a small
  `flax.serialization.MAX_CHUNK_SIZE`, so the reader's index and chunk paths meet real files.
- `clip-bf16`: `FlaxCLIPModel` whose parameters were cast to bfloat16 before saving (and before
  computing the golden embeddings), with a `CLIPProcessor` (byte-level BPE vocab, no merges).
- `hybrid-clip`: the 2021 community-week model (transformers' research project
  `examples/research_projects/jax-projects/hybrid_clip`): a CLIP vision tower and a BERT text
  encoder, `model_type` "hybrid-clip". That code was never part of the transformers package, so
  `HybridCLIPConfig` / `FlaxHybridCLIP` below reproduce its config format and module tree (same
  attribute names, hence the same parameter paths; `get_image_features` takes NHWC pixels as the
  original did). As the project's checkpoints were, it is saved with its tokenizer only: no
  preprocessor config. Its pixels follow the project's torchvision pipeline (bicubic resize to
  `image_size`, centre crop, /255, CLIP mean and std) — computed with numpy here, a no-op resize
  since the images already have that size.

golden.npz holds `texts`, `images` (file names), `pixel_values` (N, 3, H, W, float32),
`input_ids`, `attention_mask` (and `token_type_ids` for BERT) exactly as fed to the Flax model, and
`image_embeds` / `text_embeds`: the unnormalised projected features (`get_image_features` /
`get_text_features`). `clip-bf16` adds `image_embeds_fp32` / `text_embeds_fp32`: Flax's features
from the same bf16-valued weights upcast to float32, which is how the converted model runs them
(with bf16 parameters, Flax itself computes the text embedding lookups in bf16).

All parameters are redrawn from a seeded normal distribution (see `randomise`), so biases and
layer-norm parameters are not the 0 and 1 that an init leaves and would hide a mapping slip.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import flax.linen as nn
import flax.serialization
from flax.core.frozen_dict import unfreeze
from flax.traverse_util import flatten_dict, unflatten_dict
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
from transformers import (
    AutoConfig,
    BertConfig,
    BertTokenizerFast,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPProcessor,
    CLIPTokenizerFast,
    CLIPVisionConfig,
    FlaxBertModel,
    FlaxCLIPModel,
    FlaxCLIPVisionModel,
    FlaxVisionTextDualEncoderModel,
    PretrainedConfig,
    VisionTextDualEncoderConfig,
    VisionTextDualEncoderProcessor,
    ViTConfig,
    ViTImageProcessor,
)
from transformers.modeling_flax_utils import FlaxPreTrainedModel

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "flax"
IMAGE_SIZE = 32
TEXTS = ["a photo of a red circle", "two small dogs on the car", "a big blue square", "the white star ."]
WORDS = ("a an the of photo picture image small big large red green blue yellow black white cat dog dogs car "
         "bird ship plane circle square triangle star on in with and is there two one").split()
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
# CLIP's normalisation constants (the hybrid-clip training script normalised with these).
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


# ----------------------------------------------------------------------------- inputs


def make_images(folder: Path) -> list[str]:
    """Four seeded IMAGE_SIZE² RGB images (a disc or square on a noisy background), saved as PNG.

    They already have the models' input size, so resizing is a no-op and transformers 5's
    torchvision-backed processors give the same pixels as 4.46.3's PIL ones.
    """
    rng = np.random.default_rng(1234)
    names = []
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    for i in range(4):
        background = rng.integers(0, 192, size=3)
        pixels = background + rng.integers(0, 64, size=(IMAGE_SIZE, IMAGE_SIZE, 3))
        colour = rng.integers(0, 256, size=3)
        cy, cx, r = rng.integers(8, 24), rng.integers(8, 24), rng.integers(4, 10)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r if i % 2 == 0 else (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
        pixels[mask] = colour
        name = f"image-{i}.png"
        Image.fromarray(pixels.astype(np.uint8), "RGB").save(folder / name)
        names.append(name)
    return names


def load_images(folder: Path, names: list[str]) -> list[Image.Image]:
    return [Image.open(folder / name).convert("RGB") for name in names]


def bert_tokenizer(folder: Path) -> BertTokenizerFast:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # From a folder: vocab_file= is silently ignored by fast tokenizers (shared/TRAPS.md).
    return BertTokenizerFast.from_pretrained(str(folder), model_max_length=64)


def clip_tokenizer(folder: Path) -> CLIPTokenizerFast:
    """Byte-level BPE with every byte as a token and no merges; <|endoftext|> has the highest id."""
    folder.mkdir(parents=True, exist_ok=True)
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = [chr(c) for c in printable] + [chr(256 + i) for i in range(256 - len(printable))]
    vocab: dict[str, int] = {}
    for suffix in ("", "</w>"):
        for c in chars:
            vocab[c + suffix] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizerFast.from_pretrained(str(folder), model_max_length=32)


# ----------------------------------------------------------------------------- hybrid-clip, as the research project had it


class HybridCLIPConfig(PretrainedConfig):
    """The research project's config: any text config + a CLIP vision config + projection_dim.

    Saved as {"model_type": "hybrid-clip", "text_config": {...}, "vision_config": {...},
    "projection_dim": ...}; each sub-config dict carries its own model_type.
    """

    model_type = "hybrid-clip"
    is_composition = True

    def __init__(self, text_config_dict=None, vision_config_dict=None, projection_dim=512, **kwargs):
        super().__init__(**kwargs)
        # The original pops model_type unconditionally; the defaults here only let transformers
        # 4.46 instantiate the class bare (it does so while saving, to diff generation defaults).
        text_config_dict = dict(text_config_dict or {"model_type": "bert"})
        vision_config_dict = dict(vision_config_dict or {"model_type": "clip_vision_model"})
        text_type, vision_type = text_config_dict.pop("model_type"), vision_config_dict.pop("model_type")
        self.text_config = AutoConfig.for_model(text_type, **text_config_dict)
        vision = AutoConfig.for_model(vision_type, **vision_config_dict)
        self.vision_config = vision.vision_config if vision_type == "clip" else vision
        self.projection_dim = projection_dim
        self.initializer_factor = 1.0

    @classmethod
    def from_text_vision_configs(cls, text_config, vision_config, **kwargs):
        return cls(text_config_dict=text_config.to_dict(), vision_config_dict=vision_config.to_dict(), **kwargs)

    def to_dict(self):
        output = copy.deepcopy(self.__dict__)
        output["text_config"] = self.text_config.to_dict()
        output["vision_config"] = self.vision_config.to_dict()
        output["model_type"] = self.__class__.model_type
        return output


class FlaxHybridCLIPModule(nn.Module):
    """Attribute names as in the research project: they are the checkpoint's parameter paths."""

    config: HybridCLIPConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        # The project looked the text module up in FLAX_MODEL_MAPPING; BERT's is FlaxBertModule.
        self.text_model = FlaxBertModel.module_class(self.config.text_config, dtype=self.dtype)
        self.vision_model = FlaxCLIPVisionModel.module_class(self.config.vision_config, dtype=self.dtype)
        init = jax.nn.initializers.normal(0.02, dtype=self.dtype)
        self.visual_projection = nn.Dense(self.config.projection_dim, dtype=self.dtype, kernel_init=init, use_bias=False)
        self.text_projection = nn.Dense(self.config.projection_dim, dtype=self.dtype, kernel_init=init, use_bias=False)
        self.logit_scale = self.param("logit_scale", jax.nn.initializers.ones, [])

    def __call__(self, input_ids, pixel_values, attention_mask, position_ids, token_type_ids, deterministic=True):
        image = self.visual_projection(self.vision_model(pixel_values=pixel_values, deterministic=deterministic)[1])
        text = self.text_project(input_ids, attention_mask, position_ids, token_type_ids, deterministic)
        return image, text, self.logit_scale

    def text_project(self, input_ids, attention_mask, position_ids, token_type_ids, deterministic=True):
        out = self.text_model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                              position_ids=position_ids, deterministic=deterministic)
        return self.text_projection(out[1])

    def image_project(self, pixel_values, deterministic=True):
        return self.visual_projection(self.vision_model(pixel_values=pixel_values, deterministic=deterministic)[1])


class FlaxHybridCLIP(FlaxPreTrainedModel):
    config_class = HybridCLIPConfig
    module_class = FlaxHybridCLIPModule

    def __init__(self, config, input_shape=None, seed=0, dtype=jnp.float32, **kwargs):
        input_shape = input_shape or ((1, 1), (1, config.vision_config.image_size, config.vision_config.image_size, 3))
        super().__init__(config, self.module_class(config=config, dtype=dtype, **kwargs), input_shape=input_shape,
                         seed=seed, dtype=dtype)

    def init_weights(self, rng, input_shape, params=None):
        input_ids = jnp.zeros(input_shape[0], dtype="i4")
        position_ids = jnp.broadcast_to(jnp.arange(input_ids.shape[-1]), input_shape[0])
        params_rng, dropout_rng = jax.random.split(rng)
        pixel_values = jax.random.normal(rng, input_shape[1])
        return self.module.init({"params": params_rng, "dropout": dropout_rng}, input_ids, pixel_values,
                                jnp.ones_like(input_ids), position_ids, jnp.ones_like(input_ids))["params"]

    def get_text_features(self, input_ids, attention_mask, token_type_ids):
        position_ids = jnp.broadcast_to(jnp.arange(input_ids.shape[-1]), input_ids.shape)
        return self.module.apply({"params": self.params}, jnp.array(input_ids, "i4"), jnp.array(attention_mask, "i4"),
                                 position_ids, jnp.array(token_type_ids, "i4"), method=FlaxHybridCLIPModule.text_project)

    def get_image_features(self, pixel_values_nhwc):
        # As in the project: the module is applied directly, so pixels are NHWC (its collate permuted them).
        return self.module.apply({"params": self.params}, jnp.array(pixel_values_nhwc, jnp.float32),
                                 method=FlaxHybridCLIPModule.image_project)


# ----------------------------------------------------------------------------- fixtures


def randomise(model: FlaxPreTrainedModel, seed: int) -> None:
    """Redraw every parameter from a seeded normal distribution (std 0.2; layer-norm scales 1 ± 0.2).

    transformers' inits make layer-norm scales 1, biases 0 and CLIP's kernels tiny (std 0.01): a
    converter that dropped a bias or swapped scale and bias would still match, and different
    images would give nearly the same embedding. A golden test is only as sharp as its rows differ.
    """
    rng = np.random.default_rng(seed)
    flat = flatten_dict(unfreeze(model.params))
    for path, value in flat.items():
        noise = rng.normal(0.0, 0.2, size=value.shape).astype(np.float32)
        flat[path] = jnp.asarray(noise + 1.0 if path[-1] == "scale" else noise)
    model.params = unflatten_dict(flat)


def save_golden(folder: Path, names: list[str], pixel_values: np.ndarray, text_inputs: dict, image_embeds, text_embeds,
                **extra) -> None:
    arrays = {
        "texts": np.array(TEXTS),
        "images": np.array(names),
        "pixel_values": np.asarray(pixel_values, np.float32),
        **{k: np.asarray(v, np.int64) for k, v in text_inputs.items()},
        "image_embeds": np.asarray(image_embeds, np.float32),
        "text_embeds": np.asarray(text_embeds, np.float32),
        **{k: np.asarray(v, np.float32) for k, v in extra.items()},
    }
    np.savez_compressed(folder / "golden.npz", **arrays)


def check_against_call(output, image_embeds, text_embeds) -> None:
    """The feature methods must agree with the full forward pass (a guard against layout slips)."""
    for features, normalised in ((image_embeds, output.image_embeds), (text_embeds, output.text_embeds)):
        features = np.asarray(features, np.float32)
        features = features / np.linalg.norm(features, axis=-1, keepdims=True)
        np.testing.assert_allclose(features, np.asarray(normalised, np.float32), atol=1e-5)


def fresh(name: str) -> Path:
    folder = OUT / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def make_vtde(scratch: Path) -> None:
    folder = fresh("vtde-vit-bert")
    tokenizer = bert_tokenizer(scratch / "bert-tok")
    vision = ViTConfig(image_size=IMAGE_SIZE, patch_size=8, **TINY)
    text = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=64, **TINY)
    config = VisionTextDualEncoderConfig.from_vision_text_configs(vision, text, projection_dim=16)
    model = FlaxVisionTextDualEncoderModel(config, input_shape=((1, 1), (1, IMAGE_SIZE, IMAGE_SIZE, 3)), seed=0)
    randomise(model, seed=0)
    processor = VisionTextDualEncoderProcessor(ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}), tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)

    names = make_images(folder)
    pixels = processor.image_processor(images=load_images(folder, names), return_tensors="np")["pixel_values"]
    text_inputs = dict(tokenizer(TEXTS, padding=True, return_tensors="np"))
    # FlaxVisionTextDualEncoderModel.get_image_features (4.46.3) does not transpose NCHW to NHWC,
    # though its docstring says NCHW and __call__ does: it must be given NHWC pixels.
    image_embeds = model.get_image_features(pixel_values=pixels.transpose(0, 2, 3, 1))
    text_embeds = model.get_text_features(**text_inputs)
    check_against_call(model(pixel_values=pixels, **text_inputs), image_embeds, text_embeds)
    save_golden(folder, names, pixels, text_inputs, image_embeds, text_embeds)

    # The same model, sharded and with chunked arrays: both written by flax/transformers themselves.
    sharded = fresh("vtde-vit-bert-sharded")
    default_chunk = flax.serialization.MAX_CHUNK_SIZE
    flax.serialization.MAX_CHUNK_SIZE = 4096  # bytes: the word-embedding table and MLP kernels get chunked
    try:
        model.save_pretrained(sharded, max_shard_size="48KB")
    finally:
        flax.serialization.MAX_CHUNK_SIZE = default_chunk
    processor.save_pretrained(sharded)
    for name in [*names, "golden.npz"]:
        shutil.copy(folder / name, sharded / name)


def make_clip_bf16(scratch: Path) -> None:
    folder = fresh("clip-bf16")
    tokenizer = clip_tokenizer(scratch / "clip-tok")
    # Pooling reads the EOS position; the ids must be this vocabulary's (shared/TRAPS.md).
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), max_position_embeddings=32, projection_dim=16, **ids, **TINY),
        vision_config=dict(image_size=IMAGE_SIZE, patch_size=8, projection_dim=16, **TINY),
        projection_dim=16,
    )
    model = FlaxCLIPModel(config, seed=1)
    randomise(model, seed=1)
    model.params = model.to_bf16(model.params)
    image_processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)

    names = make_images(folder)
    pixels = image_processor(images=load_images(folder, names), return_tensors="np")["pixel_values"]
    text_inputs = dict(tokenizer(TEXTS, padding=True, return_tensors="np"))
    image_embeds = model.get_image_features(pixel_values=pixels)
    text_embeds = model.get_text_features(**text_inputs)
    check_against_call(model(pixel_values=pixels, **text_inputs), image_embeds, text_embeds)
    # With bf16 parameters Flax runs part of the text tower in bf16 (an embedding lookup takes its
    # table's dtype). The same weights in float32, as the converted PyTorch model runs them:
    params32 = jax.tree_util.tree_map(lambda x: x.astype(jnp.float32), model.params)
    save_golden(folder, names, pixels, text_inputs, image_embeds, text_embeds,
                image_embeds_fp32=model.get_image_features(pixel_values=pixels, params=params32),
                text_embeds_fp32=model.get_text_features(**text_inputs, params=params32))


def make_hybrid_clip(scratch: Path) -> None:
    folder = fresh("hybrid-clip")
    tokenizer = bert_tokenizer(scratch / "bert-tok")
    text = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=64, **TINY)
    vision = CLIPVisionConfig(image_size=IMAGE_SIZE, patch_size=8, **TINY)
    config = HybridCLIPConfig.from_text_vision_configs(text, vision, projection_dim=16)
    model = FlaxHybridCLIP(config, seed=2)
    randomise(model, seed=2)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)

    names = make_images(folder)
    nhwc = np.stack([np.asarray(image, np.float32) / 255.0 for image in load_images(folder, names)])
    nhwc = (nhwc - CLIP_MEAN) / CLIP_STD
    text_inputs = dict(tokenizer(TEXTS, padding=True, return_tensors="np"))
    image_embeds = model.get_image_features(nhwc)
    text_embeds = model.get_text_features(**text_inputs)
    save_golden(folder, names, nhwc.transpose(0, 3, 1, 2), text_inputs, image_embeds, text_embeds)


def main() -> None:
    scratch = OUT / "_scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        make_vtde(scratch)
        make_clip_bf16(scratch)
        make_hybrid_clip(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for folder in sorted(p for p in OUT.iterdir() if p.is_dir()):
        size = sum(f.stat().st_size for f in folder.iterdir())
        print(f"{folder.name}: {size / 1024:.0f} KB, {sorted(f.name for f in folder.iterdir())}")


if __name__ == "__main__":
    main()
