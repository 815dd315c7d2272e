"""The transformers adapter: `VisionTextDualEncoderModel`, `CLIPModel`, `SiglipModel` and every model with
`get_image_features` / `get_text_features`.

This is the only module that knows about transformers' output objects, processors and tokenizer
padding rules (SigLIP).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from vtde_bench import imaging
from vtde_bench.encoders.base import ModelInfo, weights_fingerprint
from vtde_bench.encoders.device import resolve_device, resolve_precision, wants_channels_last
from vtde_bench.encoders.text import normalizer, rule_for
from vtde_bench.errors import RunFailure, UserError

# SigLIP was trained on texts padded to the full length; its text tower pools the
# last position, so padding to the longest text in a batch changes the embeddings.
_PAD_TO_MAX_LENGTH = {"siglip", "siglip2"}
ENCODED = "encoded_images"  # image inputs left for the device to decode (`--decode gpu`)


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

    def __init__(self, model: Any, processor: Any, *, info: ModelInfo, device: str = "auto", precision: str = "auto",
                 text_normalize: str | None = None, decode: str = "auto"):
        check_dual_encoder(model, info.path)
        check_processor(processor, info.path)
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        if info.weights_fingerprint is None:  # known already when `load_model` found it in its cache
            # Hashed before the move to the device: from there every weight would be copied back first.
            info.weights_fingerprint = weights_fingerprint(model.state_dict())
        self.model = model.to(self.device).eval()
        self.image_processor = processor.image_processor
        self.tokenizer = processor.tokenizer
        self.info = info
        self.max_batch: int | None = None  # set when CUDA ran out of memory: the largest batch that fits
        self._preprocessing: dict[str, str] = {}
        config = model.config
        self.info.model_type = getattr(config, "model_type", None)
        self.pad_to_max_length = self.info.model_type in _PAD_TO_MAX_LENGTH
        # The family's text rule (SigLIP: big_vision's canonical text), which transformers' processors do not apply.
        self.text_rule = rule_for(self.info.model_type, text_normalize)
        self._normalize = normalizer(self.text_rule)
        self.max_text_length = self._max_text_length()
        # The batched path is used only where it matches the checkpoint's processor on probe images.
        self.batched_images = imaging.build(self.image_processor)
        self.info.extra["image_preprocessing"] = "batched" if self.batched_images is not None else "processor"
        self.decoder = self._decoder(decode)
        self.channels_last = wants_channels_last(self.model, self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.info.num_parameters = sum(p.numel() for p in model.parameters())
        self.info.embedding_dim = self._probe_width()

    def _decoder(self, decode: str) -> str:
        """Where JPEGs are decoded, "cpu" (the input workers) or "gpu" (the model's CUDA device, then the batched
        preprocessing there, on the same arithmetic), for `--decode` (`options.DECODERS`).

        Raises:
            UserError: --decode gpu without a CUDA device, or for a checkpoint whose processor the batched
                preprocessing with torchvision's resize does not match.
        """
        from vtde_bench.options import DEVICE_PIXEL_TOLERANCE

        if decode == "cpu":
            return "cpu"
        why = None
        if self.device.type != "cuda":
            why = "needs a CUDA device"
        elif self.batched_images is None or self.batched_images.resize_with != "torchvision":
            why = "needs the batched preprocessing with torchvision's resize, which this checkpoint's processor does not match"
        if decode == "gpu":
            if why is not None:
                raise UserError(f"--decode gpu {why}; use --decode cpu or auto")
            return "gpu"
        if why is not None:
            return "cpu"
        difference = imaging.device_jpeg_difference(str(self.device))
        return "gpu" if difference is not None and difference <= DEVICE_PIXEL_TOLERANCE else "cpu"

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

    def describe(self, kind: str) -> dict[str, Any]:
        """What turns inputs of `kind` into model inputs, readably (for the profile)."""
        if kind == "images":
            config = self.image_processor.to_dict() if hasattr(self.image_processor, "to_dict") else {}
            keys = ("size", "crop_size", "do_resize", "do_center_crop", "resample", "do_rescale", "rescale_factor",
                    "do_normalize", "image_mean", "image_std", "do_convert_rgb")
            return {"path": "batched" if self.batched_images is not None else "processor",
                    "processor": type(self.image_processor).__name__,
                    **{k: config[k] for k in keys if k in config}, "decode": "transparency on white", "decoder": self.decoder}
        return {"tokenizer": type(self.tokenizer).__name__, "context_length": self.max_text_length,
                "padding": "max_length" if self.pad_to_max_length else "longest", "truncation": True,
                "text_rule": self.text_rule}

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
                if self.text_rule != "none":  # (only then: fingerprints of models without a rule stay as they were)
                    text += f"|text_rule={self.text_rule}"
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
            # nvjpeg's pixels are not libjpeg-turbo's in the last bits (only then: keys of CPU decoding stay as they were)
            **({"decoder": "gpu"} if kind == "images" and self.decoder == "gpu" else {}),
        }

    # -------------------------------------------------------------- preprocessing (CPU, picklable)

    def decode(self, data: bytes) -> Image.Image | Tensor:
        """PIL images for the checkpoint's processor; (H, W, 3) uint8 tensors, the same pixels, for the batched path;
        JPEGs left encoded when they are decoded on the GPU (`imaging.undecoded_jpeg`)."""
        if self.decoder == "gpu":
            return imaging.undecoded_jpeg(data)
        return imaging.decode_image(data) if self.batched_images is None else imaging.decode_image_array(data)

    def image_inputs(self, images: list[Image.Image | Tensor]) -> dict[str, Any]:
        if self.decoder == "gpu":
            return {ENCODED: images}  # decoded and preprocessed on the device, in `_pixels`
        if self.batched_images is not None:
            return self.batched_images(images)
        return dict(self.image_processor(images=images, return_tensors="pt"))

    def _pixels(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The model's image inputs: as the workers made them, or decoded and preprocessed here, on the device."""
        if ENCODED not in inputs:
            return inputs
        assert self.batched_images is not None
        return self.batched_images(imaging.decode_on_device(inputs[ENCODED], self.device))

    def _texts(self, texts: list[str]) -> list[str]:
        return texts if self._normalize is None else [self._normalize(t) for t in texts]

    def text_inputs(self, texts: list[str]) -> dict[str, Tensor]:
        texts = self._texts(texts)
        padding = "max_length" if self.pad_to_max_length else True
        return dict(
            self.tokenizer(texts, padding=padding, truncation=True, max_length=self.max_text_length, return_tensors="pt")
        )

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Each text's token ids as the model sees them (normalised by the text rule, truncated, unpadded)."""
        return self.tokenizer(self._texts(texts), truncation=True, max_length=self.max_text_length)["input_ids"]

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
        return self._run(self.model.get_image_features, self._pixels(inputs))

    def embed_text_inputs(self, inputs: dict[str, Tensor]) -> Tensor:
        """(B, D) L2-normalised float32 text embeddings on the CPU."""
        return self._run(self.model.get_text_features, inputs)

    def embed_pooled_image_inputs(self, inputs: dict[str, Tensor]) -> Tensor:
        """(B, H) float32 pooled outputs of the vision tower, before the projection (what CLIP's linear probes of ViTs
        used), not normalised.

        Raises:
            UserError: the model has no separate vision tower (`vision_model`).
        """
        tower = getattr(self.model, "vision_model", None)
        if not isinstance(tower, torch.nn.Module):
            raise UserError(f"{self.info.path}: a {type(self.model).__name__} has no vision_model, so no pre-projection "
                            "features; use the projected embeddings")
        return self._run(tower, self._pixels(inputs), raw=True).float()

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


def check_dual_encoder(model: Any, path: str) -> None:
    for method in ("get_image_features", "get_text_features"):
        if not callable(getattr(model, method, None)):
            raise UserError(
                f"{path} is a {type(model).__name__}, not a vision-text dual encoder (it has no {method}); "
                "give a CLIP-, SigLIP- or VisionTextDualEncoder-style checkpoint"
            )
