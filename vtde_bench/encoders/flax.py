"""Flax checkpoints (`flax_model.msgpack`) as PyTorch dual encoders, without jax or flax.

Many public dual encoders were trained with Flax and published with Flax weights only;
transformers 5 dropped Flax, so nothing on a current stack loads them. This module reads the
weights with the `msgpack` package and builds the matching PyTorch model:

- `vision-text-dual-encoder` (FlaxVisionTextDualEncoderModel) -> `VisionTextDualEncoderModel`
- `clip` (FlaxCLIPModel) -> `CLIPModel`
- `hybrid-clip` (the 2021 community-week research project: a CLIP vision tower + any text encoder)
  -> `VisionTextDualEncoderModel` with a CLIP vision tower, which has the same module tree.

The file format is flax.serialization's: a msgpack map tree whose array leaves are ExtType
code 1 (code 3 for numpy scalars) holding a nested msgpack `(shape, dtype name, C-order bytes)`;
arrays over 1 GiB are split into `{"__msgpack_chunked_array__": True, "shape": {...}, "chunks": {...}}`
(tuples stored as maps with keys "0", "1", ...). transformers' sharded saves add
`flax_model.msgpack.index.json`, whose `weight_map` maps "a/b/c" paths to shard files.

Names: transformers wrote its Flax modules with the attribute names of its PyTorch modules of the
time, so a Flax path is a legacy PyTorch name once the leaf is renamed (kernel/scale/embedding ->
weight). Current transformers renames some modules (ViT's `encoder.layer.N.attention.attention.query`
is now `layers.N.attention.q_proj`) and converts legacy names itself when loading; we hand it the
legacy names through `from_pretrained(state_dict=...)` instead of copying its rename tables, so the
conversion follows whichever transformers 5 release is installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack
import torch
from torch import Tensor

from vtde_bench.errors import UserError

FLAX_WEIGHTS = "flax_model.msgpack"
FLAX_INDEX = "flax_model.msgpack.index.json"
PYTORCH_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
SUPPORTED = ("vision-text-dual-encoder", "clip", "hybrid-clip")

# flax.serialization._MsgpackExtType
_EXT_NDARRAY, _EXT_NPSCALAR = 1, 3
_CHUNKED = "__msgpack_chunked_array__"
# numpy dtype names as flax writes them (`arr.dtype.name`; jax's bfloat16 is "bfloat16").
_DTYPES = {
    "float64": torch.float64, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "int64": torch.int64, "int32": torch.int32, "int16": torch.int16, "int8": torch.int8,
    "uint8": torch.uint8, "bool": torch.bool,
}


def is_flax_only(folder: str | Path) -> bool:
    """True when `folder` has Flax weights (single or sharded) and no PyTorch weights."""
    folder = Path(folder)
    has_flax = (folder / FLAX_WEIGHTS).is_file() or (folder / FLAX_INDEX).is_file()
    return has_flax and not any((folder / name).is_file() for name in PYTORCH_WEIGHTS)


def _why(error: BaseException) -> str:
    """An exception as one line: our errors are one line on the terminal."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _names(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# ----------------------------------------------------------------------------- reading msgpack


def _decode_array(code: int, data: bytes) -> Any:
    if code not in (_EXT_NDARRAY, _EXT_NPSCALAR):
        return msgpack.ExtType(code, data)  # not an array (e.g. a complex scalar): reported as unusable later
    shape, dtype_name, buffer = msgpack.unpackb(data, raw=True)
    dtype = _DTYPES.get(dtype_name.decode())
    if dtype is None:
        raise ValueError(f"unsupported array dtype {dtype_name.decode()!r}")
    if not buffer:
        return torch.empty(shape, dtype=dtype)
    # Bytes are in the writer's native order; every platform Flax runs on is little-endian, like ours.
    # torch reads bfloat16 natively (numpy cannot without jax's ml_dtypes).
    return torch.frombuffer(bytearray(buffer), dtype=dtype).reshape(shape)


def _unchunk(node: dict[str, Any]) -> Tensor:
    shape = [node["shape"][str(i)] for i in range(len(node["shape"]))]
    chunks = [node["chunks"][str(i)].reshape(-1) for i in range(len(node["chunks"]))]
    return torch.cat(chunks).reshape(shape)


def _flatten(node: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(node, dict) and _CHUNKED in node:
        out[prefix] = _unchunk(node)
    elif isinstance(node, dict):
        for key, value in node.items():
            _flatten(value, f"{prefix}/{key}" if prefix else str(key), out)
    else:
        out[prefix] = node


def _read_msgpack(path: Path) -> dict[str, Any]:
    """One msgpack file as {"a/b/c": leaf}."""
    if not path.is_file():
        raise UserError(f"{path.parent}: {path.name} is missing; the Flax checkpoint is incomplete")
    data = path.read_bytes()
    if data.startswith(b"version https://git-lfs"):
        raise UserError(f"{path} is a git-lfs pointer, not the weights; run `git lfs pull` in {path.parent}")
    try:
        tree = msgpack.unpackb(data, ext_hook=_decode_array, raw=False)
    except Exception as e:  # noqa: BLE001 - msgpack raises several types for corrupt data
        raise UserError(f"{path} is not a readable Flax msgpack checkpoint ({_why(e)})") from None
    if not isinstance(tree, dict):
        raise UserError(f"{path} holds a {type(tree).__name__}, not a Flax parameter tree")
    flat: dict[str, Any] = {}
    _flatten(tree, "", flat)
    return flat


def read_flax_params(folder: str | Path) -> dict[str, Tensor]:
    """All parameters of a Flax checkpoint folder as {"a/b/c": tensor}, in their stored dtypes.

    Raises:
        UserError: files missing or unreadable, an index naming a parameter its shard lacks, or a
            leaf that is not an array.
    """
    folder = Path(folder)
    if (folder / FLAX_INDEX).is_file():
        try:
            weight_map: dict[str, str] = json.loads((folder / FLAX_INDEX).read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UserError(f"{folder}/{FLAX_INDEX} is not a checkpoint index ({_why(e)})") from None
        params: dict[str, Any] = {}
        for shard in sorted(set(weight_map.values())):
            params.update(_read_msgpack(folder / shard))
        absent = sorted(set(weight_map) - set(params))
        if absent:
            raise UserError(f"{folder}: {FLAX_INDEX} lists parameters no shard holds: {_names(absent)}")
    else:
        params = _read_msgpack(folder / FLAX_WEIGHTS)
    # Some training scripts saved the whole variables dict {"params": {...}}.
    if params and all(name.startswith("params/") for name in params):
        params = {name.removeprefix("params/"): value for name, value in params.items()}
    bad = sorted(name for name, value in params.items() if not isinstance(value, Tensor))
    if bad:
        raise UserError(f"{folder}: these Flax leaves are not arrays, so no PyTorch parameter can take them: {_names(bad)}")
    return params


# ----------------------------------------------------------------------------- Flax -> PyTorch


def to_pytorch_tensors(params: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Flax paths and layouts to legacy PyTorch names and layouts.

    Dense kernels are (in, out) in Flax and (out, in) in PyTorch; convolution kernels are HWIO in
    Flax and OIHW in PyTorch; layer norms call their weight `scale` and embeddings theirs
    `embedding`. Floating tensors become float32 (bf16 and fp16 checkpoints included), as
    transformers did when it loaded Flax weights into PyTorch.

    Returns:
        (tensors by PyTorch name, Flax path by PyTorch name) — the second for error messages.
    """
    tensors: dict[str, Tensor] = {}
    sources: dict[str, str] = {}
    for path, tensor in params.items():
        *module, leaf = path.split("/")
        if leaf == "kernel":
            if tensor.ndim == 2:
                tensor = tensor.T
            elif tensor.ndim == 4:
                tensor = tensor.permute(3, 2, 0, 1)
            else:
                raise UserError(f"Flax kernel {path} has {tensor.ndim} dimensions; only dense (2) and 2-D convolution (4) kernels are supported")
            leaf = "weight"
        elif leaf in ("scale", "embedding"):
            leaf = "weight"
        name = ".".join([*module, leaf])
        if name in tensors:
            raise UserError(f"Flax parameters {sources[name]} and {path} both map to the PyTorch parameter {name}")
        tensors[name] = (tensor.float() if tensor.is_floating_point() else tensor).contiguous()
        sources[name] = path
    return tensors, sources


def _raw_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path} cannot be read as JSON ({_why(e)})") from None
    if raw.get("model_type") not in SUPPORTED:
        raise UserError(
            f"{folder}: Flax weights of model_type {raw.get('model_type')!r} are not supported; "
            f"supported: {', '.join(SUPPORTED)} (or convert the checkpoint to PyTorch with transformers 4.x)"
        )
    return raw


def pytorch_config(folder: str | Path) -> Any:
    """The transformers config of the PyTorch model a Flax checkpoint folder converts to."""
    from transformers import AutoConfig, VisionTextDualEncoderConfig

    folder = Path(folder)
    raw = _raw_config(folder)
    try:
        if raw["model_type"] != "hybrid-clip":
            return AutoConfig.from_pretrained(folder)
        # hybrid-clip saved each sub-config as a full dict carrying its own model_type
        # ("clip_vision_model" for the vision tower), which is what VisionTextDualEncoderConfig takes.
        return VisionTextDualEncoderConfig(
            text_config=raw["text_config"], vision_config=raw["vision_config"], projection_dim=raw.get("projection_dim", 512)
        )
    except (KeyError, TypeError, ValueError, OSError) as e:
        raise UserError(f"{folder}/config.json is not a valid {raw['model_type']} config ({_why(e)})") from None


def load_flax_model(folder: str | Path) -> Any:
    """Build the PyTorch model of a Flax checkpoint folder, every parameter from the checkpoint, in float32.

    Raises:
        UserError: an unsupported model type, unreadable weights, or any Flax parameter left unused,
            PyTorch parameter left unfilled, or shape that differs — never a silent random init.
    """
    from transformers import CLIPModel, VisionTextDualEncoderModel

    folder = Path(folder)
    config = pytorch_config(folder)
    model_class = CLIPModel if config.model_type == "clip" else VisionTextDualEncoderModel
    tensors, sources = to_pytorch_tensors(read_flax_params(folder))
    try:
        model, loading = model_class.from_pretrained(
            None, config=config, state_dict=tensors, dtype=torch.float32,
            output_loading_info=True, ignore_mismatched_sizes=True,
        )
    except Exception as e:  # noqa: BLE001 - transformers raises many types for bad weights
        raise UserError(f"{folder}: the converted Flax weights failed to load ({_why(e)})") from None
    _check_complete(folder, model, loading, tensors, sources)
    return model.eval()


def _check_complete(folder: Path, model: Any, loading: dict[str, Any], tensors: dict[str, Tensor], sources: dict[str, str]) -> None:
    """Every Flax parameter used, every PyTorch parameter filled, all shapes equal."""
    mismatched = sorted(str(item[0] if isinstance(item, tuple) else item) for item in loading.get("mismatched_keys", ()))
    if mismatched:
        raise UserError(f"{folder}: Flax parameters whose shapes do not fit the model built from config.json: {_names([sources.get(k, k) for k in mismatched])}")
    unused = sorted(sources.get(k, k) for k in loading.get("unexpected_keys", ()))
    if unused:
        raise UserError(f"{folder}: Flax parameters the {type(model).__name__} has no place for: {_names(unused)}")
    # Buffers are not parameters and Flax does not store them: position_ids (and BERT's all-zero
    # token_type_ids) keep the values the model's constructor gives them.
    buffers = {name for name, _ in model.named_buffers()}
    unfilled = sorted(set(loading.get("missing_keys", ())) - buffers)
    if unfilled:
        raise UserError(f"{folder}: PyTorch parameters the Flax checkpoint does not provide: {_names(unfilled)}")
    # Belt and braces: transformers drops without a word the checkpoint keys a model class lists in
    # `_keys_to_ignore_on_load_unexpected`, so the element counts must agree too.
    given, filled = sum(t.numel() for t in tensors.values()), sum(p.numel() for p in model.parameters())
    if given != filled:
        raise UserError(f"{folder}: the Flax checkpoint has {given} values but the {type(model).__name__} {filled}; some parameters were not used")


# ----------------------------------------------------------------------------- processors and conversion


def load_flax_processor(folder: str | Path) -> Any:
    """The image processor and tokenizer for a Flax checkpoint folder, as one processor.

    `AutoProcessor` reads the folder's processor files. hybrid-clip folders need more care: their
    model_type is unknown to transformers (so the text sub-config names the tokenizer class), and
    the research project preprocessed images with torchvision (bicubic resize of the short side to
    `image_size`, centre crop, CLIP's mean and std) and saved no preprocessor config, which is what
    a `CLIPImageProcessor` sized from the vision config does.
    """
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer, CLIPImageProcessor, VisionTextDualEncoderProcessor

    folder = Path(folder)
    raw = _raw_config(folder)
    config = pytorch_config(folder)
    try:
        if raw["model_type"] != "hybrid-clip":
            processor = AutoProcessor.from_pretrained(folder)
        else:
            tokenizer = AutoTokenizer.from_pretrained(folder, config=config.text_config)
            if (folder / "preprocessor_config.json").is_file():
                image_processor = AutoImageProcessor.from_pretrained(folder)
            else:
                size = config.vision_config.image_size
                image_processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
            processor = VisionTextDualEncoderProcessor(image_processor=image_processor, tokenizer=tokenizer)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{folder}: no image processor and tokenizer could be loaded ({_why(e)}); {_tokenizer_hint(raw)}") from None
    from vtde_bench.encoders.hf import check_processor

    check_processor(processor, str(folder), _tokenizer_hint(raw))
    return processor


def _tokenizer_hint(raw: dict[str, Any]) -> str:
    source = (raw.get("text_config") or {}).get("_name_or_path")
    hint = f" (the text encoder was trained from {source})" if source else ""
    return f"put the text encoder's tokenizer files (tokenizer.json, or its vocabulary files) in the folder{hint}"


def convert(folder: str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write a Flax checkpoint folder as a PyTorch one (safetensors, config, processor files) at `out`.

    The folder is written beside `out` under a temporary name and renamed into place, so `out`
    is never left half-written.

    Raises:
        UserError: `out` exists (without `overwrite`) or is the source folder, or the conversion fails.
    """
    folder, out = Path(folder).expanduser(), Path(out).expanduser()
    if not (folder / "config.json").is_file() or not is_flax_only(folder):
        raise UserError(f"{folder} is not a Flax checkpoint folder (config.json and {FLAX_WEIGHTS} or {FLAX_INDEX}, no PyTorch weights)")
    if out.resolve() == folder.resolve():
        raise UserError(f"--to {out} is the source folder; give a new folder")
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--to {out} exists; give a new folder or pass --overwrite")
    from vtde_bench.encoders.save import save_pretrained_atomically

    model, processor = load_flax_model(folder), load_flax_processor(folder)
    try:
        return save_pretrained_atomically(model, processor, out)
    except OSError as e:
        raise UserError(f"--to {out}: cannot write there ({e.strerror or e})") from None
