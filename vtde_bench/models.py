"""Dual encoders: the protocol the evaluators use, and the transformers adapter.

This is the only module that knows about transformers' output objects,
processors, tokenizer padding rules (SigLIP) and checkpoint folders.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from vtde_bench import preprocess
from vtde_bench.data import decode_image, decode_image_array
from vtde_bench.errors import RunFailure, UserError
from vtde_bench.locate import local_model_folder

# SigLIP was trained on texts padded to the full length; its text tower pools the
# last position, so padding to the longest text in a batch changes the embeddings.
_PAD_TO_MAX_LENGTH = {"siglip", "siglip2"}


@runtime_checkable
class DualEncoder(Protocol):
    """What the evaluators need: images and texts to L2-normalised float32 embeddings of one width."""

    def encode_images(self, images: list[Image.Image]) -> Tensor: ...

    def encode_texts(self, texts: list[str]) -> Tensor: ...


class Embedder(Protocol):
    """What the embedding loop drives: CPU preprocessing (may run in workers), then the model.

    `HFDualEncoder` and `ProtocolEncoder` implement it.
    """

    device: torch.device
    precision: str
    info: "ModelInfo"

    def cache_key(self, kind: str) -> dict[str, Any] | None: ...

    def preprocessing_fingerprint(self, kind: str) -> str | None:
        """sha256 of what turns inputs of `kind` into model inputs (None when the model's own code does it)."""

    def decode(self, data: bytes) -> Any:
        """Image bytes → one item of what `image_inputs` takes (runs in the input workers)."""

    def image_inputs(self, images: list[Any]) -> dict[str, Any]: ...

    def text_inputs(self, texts: list[str]) -> dict[str, Any]: ...

    def embed_image_inputs(self, inputs: dict[str, Any]) -> Tensor: ...

    def embed_text_inputs(self, inputs: dict[str, Any]) -> Tensor: ...


@dataclass
class ModelInfo:
    """Provenance of a loaded model, recorded in every result."""

    path: str
    revision: str | None = None
    resolved_commit: str | None = None
    weights_fingerprint: str | None = None
    num_parameters: int | None = None
    embedding_dim: int | None = None
    model_type: str | None = None
    is_local: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        """Folder name for results: `org__name` for a hub id, `<folder>-<fingerprint[:8]>` for a local folder."""
        if not self.is_local:
            return self.path.replace("/", "__")
        name = Path(self.path).resolve().name or "model"
        return f"{name}-{(self.weights_fingerprint or 'unknown')[:8]}"


def weights_fingerprint(state_dict: dict[str, Tensor]) -> str:
    """sha256 over the sorted (name, dtype, shape, bytes) of every tensor of a state dict."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def resolve_device(device: str) -> torch.device:
    """`auto` picks CUDA, then MPS, then the CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device not in ("cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise UserError(f"--device {device!r} is not one of auto, cpu, cuda, mps")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if device == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise UserError("--device mps was asked for but Apple's MPS is not available here; use --device cpu (or auto)")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` is bf16 autocast on CUDA (fp16 where bf16 is unsupported) and fp32 elsewhere."""
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise UserError(f"--precision {precision!r} is not one of auto, fp32, bf16, fp16")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def accepted_inputs(fn: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """Keep the processor outputs that the feature method (or a module's forward) names as parameters."""
    target = fn.forward if isinstance(fn, torch.nn.Module) else fn  # a module is called whole, so its hooks run
    names = {p.name for p in inspect.signature(target).parameters.values() if p.kind != p.VAR_KEYWORD}
    return {k: v for k, v in inputs.items() if k in names}


def _features(output: Any) -> Tensor:
    # transformers 5 returns an output object whose pooler_output is the projected
    # embedding; older releases and custom models return the tensor itself.
    if isinstance(output, Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if isinstance(pooled, Tensor):
        return pooled
    for name in ("image_embeds", "text_embeds"):
        if isinstance(getattr(output, name, None), Tensor):
            return getattr(output, name)
    raise RunFailure(f"the model's feature method returned {type(output).__name__}, which holds no embedding tensor")


class HFDualEncoder:
    """A transformers dual encoder (`VisionTextDualEncoderModel`, `CLIPModel`, `SiglipModel`, ...).

    Preprocessing (`image_inputs`, `text_inputs`) runs on the CPU and may run in
    worker processes; `embed_*` runs the model on its device.
    """

    def __init__(self, model: Any, processor: Any, *, info: ModelInfo, device: str = "auto", precision: str = "auto"):
        _check_dual_encoder(model, info.path)
        check_processor(processor, info.path)
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.model = model.to(self.device).eval()
        self.image_processor = processor.image_processor
        self.tokenizer = processor.tokenizer
        self.info = info
        self.max_batch: int | None = None  # set when CUDA ran out of memory: the largest batch that fits
        self._preprocessing: dict[str, str] = {}
        config = model.config
        self.info.model_type = getattr(config, "model_type", None)
        self.pad_to_max_length = self.info.model_type in _PAD_TO_MAX_LENGTH
        self.max_text_length = self._max_text_length()
        # The batched path is used only where it matches the checkpoint's processor on probe images.
        self.batched_images = preprocess.build(self.image_processor)
        self.info.extra["image_preprocessing"] = "batched" if self.batched_images is not None else "processor"
        self.channels_last = wants_channels_last(self.model, self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.info.num_parameters = sum(p.numel() for p in model.parameters())
        self.info.weights_fingerprint = weights_fingerprint(model.state_dict())
        self.info.embedding_dim = self._probe_width()

    def _max_text_length(self) -> int:
        text_config = getattr(self.model.config, "text_config", self.model.config)
        limits = [getattr(text_config, "max_position_embeddings", None)]
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and tok_max < 100_000:  # tokenizers use 1e30 for "no limit"
            limits.append(tok_max)
        known = [x for x in limits if isinstance(x, int) and x > 0]
        return min(known) if known else 77

    def _probe_width(self) -> int:
        """Run one tiny image and text through the model, so a broken checkpoint fails before the data loads."""
        image_width = self.encode_images([Image.new("RGB", (32, 32), (127, 127, 127))]).shape[1]
        text_width = self.encode_texts(["a photo."]).shape[1]
        if image_width != text_width:
            raise UserError(
                f"{self.info.path}: image embeddings have width {image_width} but text embeddings {text_width}; "
                "a dual encoder must project both into one space (check projection_dim)"
            )
        return image_width

    def preprocessing_fingerprint(self, kind: str) -> str:
        """sha256 of what turns inputs of `kind` ("images" or "texts") into model inputs.

        Images: the image processor's class and configuration, and whether the batched path runs.
        Texts: the tokenizer's class, its whole definition (the `tokenizers` JSON, or the vocabulary and
        the sentencepiece model), its options, the padding rule and the length. Computed once: the
        tokenizer's JSON is several MB for large vocabularies.
        """
        if kind not in self._preprocessing:
            if kind == "images":
                config = self.image_processor.to_json_string() if hasattr(self.image_processor, "to_json_string") else repr(self.image_processor)
                text = f"{type(self.image_processor).__name__}|{config}|batched={self.batched_images is not None}"
            else:
                text = f"{type(self.tokenizer).__name__}|{self.pad_to_max_length}|{self.max_text_length}|{_tokenizer_definition(self.tokenizer)}"
            self._preprocessing[kind] = hashlib.sha256(text.encode()).hexdigest()
        return self._preprocessing[kind]

    def cache_key(self, kind: str) -> dict[str, Any] | None:
        """What embeddings of `kind` ("images" or "texts") depend on besides the inputs themselves."""
        return {
            "weights": self.info.weights_fingerprint,
            "preprocessing": self.preprocessing_fingerprint(kind),
            "precision": self.precision,
            # Kernels differ by device (and memory format), and so do the last bits of the embeddings.
            "device": self.device.type,
            "channels_last": kind == "images" and self.channels_last,
        }

    # -------------------------------------------------------------- preprocessing (CPU, picklable)

    def decode(self, data: bytes) -> Image.Image | Tensor:
        """PIL images for the checkpoint's processor; (H, W, 3) uint8 tensors, the same pixels, for the batched path."""
        return decode_image(data) if self.batched_images is None else decode_image_array(data)

    def image_inputs(self, images: list[Image.Image | Tensor]) -> dict[str, Tensor]:
        if self.batched_images is not None:
            return self.batched_images(images)
        return dict(self.image_processor(images=images, return_tensors="pt"))

    def text_inputs(self, texts: list[str]) -> dict[str, Tensor]:
        padding = "max_length" if self.pad_to_max_length else True
        return dict(
            self.tokenizer(texts, padding=padding, truncation=True, max_length=self.max_text_length, return_tensors="pt")
        )

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Each text's token ids as the model sees them (truncated, unpadded)."""
        return self.tokenizer(texts, truncation=True, max_length=self.max_text_length)["input_ids"]

    # -------------------------------------------------------------- model (device)

    def _run(self, fn: Any, inputs: dict[str, Tensor], *, raw: bool = False) -> Tensor:
        """Forward in sub-batches of at most `max_batch` rows; on CUDA out-of-memory, halve it and retry.

        Returns L2-normalised float32 embeddings, or with `raw` the output's pooled tensor as computed.
        """
        inputs = accepted_inputs(fn, inputs)
        rows = next(iter(inputs.values())).shape[0]
        limit = self.max_batch or rows
        try:
            parts = [self._forward(fn, {k: v[i : i + limit] for k, v in inputs.items()}, raw) for i in range(0, rows, limit)]
        except torch.cuda.OutOfMemoryError:
            if limit == 1:
                raise RunFailure("out of GPU memory with one input at a time; use --precision bf16 or a larger GPU") from None
            torch.cuda.empty_cache()
            self.max_batch = max(1, min(limit, rows) // 2)  # remembered: later batches start there
            return self._run(fn, inputs, raw=raw)
        return torch.cat(parts)

    def _forward(self, fn: Any, inputs: dict[str, Tensor], raw: bool = False) -> Tensor:
        inputs = {k: v.to(self.device, non_blocking=True) for k, v in inputs.items()}
        if self.channels_last:
            inputs = {k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v for k, v in inputs.items()}
        autocast = self.precision in ("bf16", "fp16")
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=dtype, enabled=autocast):
            emb = _features(fn(**inputs))
        if raw:
            return emb.cpu()
        # Normalise and compare in float32 whatever the compute precision.
        emb = emb.float()
        if not torch.isfinite(emb).all():
            raise RunFailure(
                f"the model produced NaN or inf embeddings in {self.precision}; rerun with --precision fp32"
            )
        return F.normalize(emb, dim=-1).cpu()

    def embed_image_inputs(self, inputs: dict[str, Tensor]) -> Tensor:
        """(B, D) L2-normalised float32 image embeddings on the CPU."""
        return self._run(self.model.get_image_features, inputs)

    def embed_text_inputs(self, inputs: dict[str, Tensor]) -> Tensor:
        """(B, D) L2-normalised float32 text embeddings on the CPU."""
        return self._run(self.model.get_text_features, inputs)

    def encode_images(self, images: list[Image.Image]) -> Tensor:
        return self.embed_image_inputs(self.image_inputs(images))

    def encode_texts(self, texts: list[str]) -> Tensor:
        return self.embed_text_inputs(self.text_inputs(texts))


# Options that say where a tokenizer was loaded from, not how it tokenizes.
_LOCATION_OPTIONS = {"name_or_path", "is_local", "local_files_only", "processor_class", "cache_dir", "revision", "token"}


def _tokenizer_definition(tokenizer: Any) -> str:
    """Everything that decides a tokenizer's ids, as text, whatever folder it was loaded from."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        vocabulary = backend.to_str()
    else:
        vocabulary = repr(sorted(tokenizer.get_vocab().items()))
        model = getattr(tokenizer, "sp_model", None)
        if model is not None and hasattr(model, "serialized_model_proto"):
            vocabulary += "|" + hashlib.sha256(model.serialized_model_proto()).hexdigest()
    options = {k: v for k, v in getattr(tokenizer, "init_kwargs", {}).items()
               if k not in _LOCATION_OPTIONS and not k.endswith("_file")}
    return vocabulary + "|" + json.dumps(options, sort_keys=True, default=repr)


def wants_channels_last(model: Any, device: torch.device) -> bool:
    """Whether to run the model channels-last: for convolutional image towers on CUDA.

    There cuDNN's channels-last kernels are the fast ones, under autocast especially;
    a ViT's one patch convolution gains nothing, and on the CPU it is not worth a copy.
    """
    tower = getattr(model, "vision_model", None)
    if device.type != "cuda" or not isinstance(tower, torch.nn.Module):
        return False
    return sum(isinstance(m, torch.nn.Conv2d) for m in tower.modules()) > 1


def check_processor(processor: Any, where: str, fix: str = "save the processor, tokenizer included, with the model "
                    "(processor.save_pretrained)") -> None:
    """A processor with both an image processor and a tokenizer that has a vocabulary.

    transformers 5 builds a tokenizer of special tokens only, silently, from a folder without
    tokenizer files: every word would become the unknown token and every metric sit at chance.
    """
    if not hasattr(processor, "image_processor") or not hasattr(processor, "tokenizer"):
        raise UserError(f"{where}: the processor is a {type(processor).__name__}, without both an image processor "
                        f"and a tokenizer; give a dual-encoder processor (e.g. VisionTextDualEncoderProcessor)")
    if len(processor.tokenizer) <= len(set(processor.tokenizer.all_special_ids)):
        raise UserError(f"{where}: the tokenizer holds only its {len(processor.tokenizer)} special tokens (no vocabulary files); {fix}")


def _check_dual_encoder(model: Any, path: str) -> None:
    for method in ("get_image_features", "get_text_features"):
        if not callable(getattr(model, method, None)):
            raise UserError(
                f"{path} is a {type(model).__name__}, not a vision-text dual encoder (it has no {method}); "
                "give a CLIP-, SigLIP- or VisionTextDualEncoder-style checkpoint"
            )


class ProtocolEncoder:
    """Wraps any object with `encode_images` / `encode_texts` so the embedding loop can drive it.

    Preprocessing is the identity (the object gets PIL images and strings); its
    outputs are checked, cast to float32 and L2-normalised here.
    """

    def __init__(self, encoder: Any):
        self.encoder = encoder
        self.device = torch.device("cpu")
        self.precision = "fp32"
        self.info = ModelInfo(path=getattr(encoder, "name", type(encoder).__name__), model_type="custom")
        state = encoder.state_dict() if callable(getattr(encoder, "state_dict", None)) else None
        # Without weights or a `fingerprint` of its own, nothing tells two instances apart: None, so
        # that neither results nor cached embeddings of one are ever reused for another.
        self.info.weights_fingerprint = weights_fingerprint(state) if state else getattr(encoder, "fingerprint", None)
        self.info.embedding_dim = self._probe_width()

    def _probe_width(self) -> int:
        image_width = self.embed_image_inputs({"images": [Image.new("RGB", (32, 32), (127, 127, 127))]}).shape[1]
        text_width = self.embed_text_inputs({"texts": ["a photo."]}).shape[1]
        if image_width != text_width:
            raise UserError(f"{self.info.path}: image embeddings have width {image_width} but text embeddings {text_width}")
        return image_width

    def preprocessing_fingerprint(self, kind: str) -> None:
        return None  # the object's own code turns images and texts into embeddings

    def cache_key(self, kind: str) -> dict[str, Any] | None:
        # Only an object that names its own fingerprint can be cached: its weights alone do not
        # pin what its own code does with them.
        fingerprint = getattr(self.encoder, "fingerprint", None)
        return {"weights": fingerprint, "precision": self.precision} if fingerprint else None

    def decode(self, data: bytes) -> Image.Image:
        return decode_image(data)

    def image_inputs(self, images: list[Image.Image]) -> dict[str, Any]:
        return {"images": images}

    def text_inputs(self, texts: list[str]) -> dict[str, Any]:
        return {"texts": texts}

    def _check(self, emb: Any, n: int) -> Tensor:
        emb = torch.as_tensor(emb).float().cpu()
        if emb.ndim != 2 or emb.shape[0] != n:
            raise RunFailure(f"{self.info.path} returned embeddings of shape {tuple(emb.shape)} for {n} inputs; expected ({n}, D)")
        if not torch.isfinite(emb).all():
            raise RunFailure(f"{self.info.path} produced NaN or inf embeddings")
        return F.normalize(emb, dim=-1)

    def embed_image_inputs(self, inputs: dict[str, Any]) -> Tensor:
        return self._check(self.encoder.encode_images(inputs["images"]), len(inputs["images"]))

    def embed_text_inputs(self, inputs: dict[str, Any]) -> Tensor:
        return self._check(self.encoder.encode_texts(inputs["texts"]), len(inputs["texts"]))


def as_dual_encoder(model: Any, *, processor: Any = None, device: str = "auto", precision: str = "auto") -> Any:
    """Turn what a user hands the API into something the embedding loop can drive.

    Accepts a loaded adapter, a transformers model (with `processor`, or one saved
    beside it at `model.name_or_path`), or any object with `encode_images` /
    `encode_texts`.
    """
    if isinstance(model, (HFDualEncoder, ProtocolEncoder)):
        return model
    if callable(getattr(model, "get_image_features", None)):
        if processor is None:
            from transformers import AutoProcessor

            try:
                processor = AutoProcessor.from_pretrained(model.name_or_path)
            except (OSError, ValueError, TypeError) as e:
                raise UserError(f"pass processor= for this {type(model).__name__}: none could be loaded ({_first_line(e)})") from None
        info = ModelInfo(path=str(getattr(model, "name_or_path", "") or type(model).__name__))
        return HFDualEncoder(model, processor, info=info, device=device, precision=precision)
    if isinstance(model, DualEncoder):
        return ProtocolEncoder(model)
    raise UserError(
        f"cannot evaluate a {type(model).__name__}: give a checkpoint path, a transformers dual encoder "
        "with its processor, or an object with encode_images and encode_texts"
    )


def load_model(
    path: str | Path,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    device: str = "auto",
    precision: str = "auto",
) -> HFDualEncoder:
    """Load a dual encoder and its processor from a `save_pretrained` folder or a hub id.

    Raises:
        UserError: the path is missing or not a folder, has no config.json, is not a
            dual encoder, or its weights do not load.
    """
    from transformers import AutoConfig, AutoModel, AutoProcessor

    from vtde_bench.locate import hub_model_from_cache

    path = str(path)
    folder = local_model_folder(path, revision)
    local = folder is not None
    if folder is not None:
        path = str(folder)
        # ---- Flax-only folders: transformers 5 cannot load them, so vtde_bench.flax converts in memory.
        from vtde_bench import flax as flax_checkpoint

        if flax_checkpoint.is_flax_only(folder):
            model = flax_checkpoint.load_flax_model(folder)
            processor = flax_checkpoint.load_flax_processor(folder)
            info = ModelInfo(path=path, is_local=True, extra={"weights_format": "flax"})
            return HFDualEncoder(model, processor, info=info, device=device, precision=precision)
        # ---- end of the Flax branch
    hub_args: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
    if not local and hub_model_from_cache(path, revision):
        hub_args["local_files_only"] = True  # the hub cannot be reached: no minute of retries before the cache
    try:
        config = AutoConfig.from_pretrained(path, **hub_args)
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise UserError(f"{path} needs its own code to load; rerun with --trust-remote-code if you trust it") from None
        raise UserError(f"{path}: config.json is not a model config transformers knows ({_first_line(e)})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot load the config ({_first_line(e)}); check the id, --revision and your network") from None
    try:
        model, loading = AutoModel.from_pretrained(path, config=config, output_loading_info=True, **hub_args)
    except Exception as e:  # noqa: BLE001 - safetensors, torch and transformers each raise their own types
        raise UserError(f"{path}: the weights failed to load ({_first_line(e)}); check the checkpoint files") from None
    # transformers fills weights missing from the checkpoint with random values and only logs it.
    missing = sorted(map(str, loading.get("missing_keys") or ()))
    if missing:
        raise UserError(
            f"{path}: the checkpoint lacks {len(missing)} weight(s) the model needs (e.g. {missing[0]}), which would be "
            "randomly initialised; give the complete checkpoint"
        )
    _check_dual_encoder(model, path)
    try:
        processor = AutoProcessor.from_pretrained(path, **hub_args)
    except (OSError, ValueError, KeyError, TypeError) as e:
        if "trust_remote_code" in str(e):  # a tokenizer or processor with an auto_map to code in the folder
            raise UserError(f"{path}: its tokenizer or processor needs its own code to load; rerun with --trust-remote-code if you trust it") from None
        raise UserError(
            f"{path}: no image processor and tokenizer could be loaded ({_first_line(e)}); save the processor with the model"
        ) from None
    info = ModelInfo(
        path=path,
        revision=revision,
        resolved_commit=getattr(config, "_commit_hash", None),
        is_local=local,
    )
    return HFDualEncoder(model, processor, info=info, device=device, precision=precision)


def save_pretrained_atomically(model: Any, processor: Any, out_dir: str | Path) -> Path:
    """Save a model and its processor into a sibling temp folder, then swap it in: `out_dir` is never half written.

    An existing `out_dir` is replaced (moved aside first, then removed).
    """
    import os
    import shutil
    import tempfile

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.new-", dir=out_dir.parent))
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old / "model")
            os.replace(staging, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
