"""Batched tensor image preprocessing, equal to the checkpoint's own processor within a checked tolerance.

transformers' processors convert each PIL image to a contiguous CHW tensor and
normalise it image by image; most of their time goes to those copies. Here the
images of a batch are stacked once as uint8 (B, H, W, C), resized in one call
per distinct size with the same torchvision kernel (bicubic/bilinear, antialiased),
cropped by slicing, and normalised in one fused operation.

Only the processor settings understood here are accelerated; anything else, or
a processor whose output differs on probe images by more than `TOLERANCE`,
keeps the checkpoint's own processor (`build` returns None).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

TOLERANCE = 0.02  # max abs difference after normalisation, on the probe images
_KNOWN = {
    "do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor", "do_normalize",
    "image_mean", "image_std", "do_convert_rgb", "image_processor_type", "processor_class", "default_to_square",
    "input_data_format", "data_format", "return_tensors", "device", "disable_grouping", "crop_pct",
}
_RESAMPLE = {2: "BILINEAR", 3: "BICUBIC"}


def _value(config: dict[str, Any], key: str, default: Any = None) -> Any:
    value = config.get(key, default)
    return default if value is None else value


class TensorImagePreprocessor:
    """Resize (shortest edge or fixed size), optional centre crop, rescale and normalise, for a batch at once."""

    def __init__(self, config: dict[str, Any]):
        size = config["size"]
        self.shortest_edge = size.get("shortest_edge")
        self.fixed = (size["height"], size["width"]) if "height" in size else None
        crop = config.get("crop_size") or {}
        self.crop = (crop["height"], crop["width"]) if _value(config, "do_center_crop", False) else None
        self.resample = _RESAMPLE[int(_value(config, "resample", 3))]
        scale = float(_value(config, "rescale_factor", 1 / 255)) if _value(config, "do_rescale", True) else 1.0
        mean = np.array(_value(config, "image_mean", [0.0, 0.0, 0.0]), dtype=np.float32)
        std = np.array(_value(config, "image_std", [1.0, 1.0, 1.0]), dtype=np.float32)
        if not _value(config, "do_normalize", True):
            mean, std = np.zeros(3, np.float32), np.ones(3, np.float32)
        # One fused step, (x * scale - mean) / std = (x - mean / scale) / (std / scale), as the processors do.
        self.offset = torch.from_numpy(mean / scale).view(1, 3, 1, 1)
        self.divisor = torch.from_numpy(std / scale).view(1, 3, 1, 1)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if self.fixed is not None:
            return self.fixed
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(self.shortest_edge * long / short)
        return (new_long, self.shortest_edge) if width <= height else (self.shortest_edge, new_long)

    def __call__(self, images: list[Image.Image | torch.Tensor]) -> dict[str, torch.Tensor]:
        """Images as PIL images or (H, W, 3) uint8 tensors (`data.decode_image_array`), in any mix."""
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as tvF

        mode = getattr(InterpolationMode, self.resample)
        arrays = [image if isinstance(image, torch.Tensor) else torch.from_numpy(np.array(image.convert("RGB")))
                  for image in images]
        out: list[torch.Tensor | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, array in enumerate(arrays):
            groups.setdefault((array.shape[0], array.shape[1]), []).append(i)
        for (height, width), members in groups.items():
            # (B, H, W, C) uint8 viewed as channels-last (B, C, H, W): one copy, and the fast resize kernel.
            batch = torch.stack([arrays[i] for i in members]).permute(0, 3, 1, 2)
            batch = tvF.resize(batch, list(self.output_size(height, width)), interpolation=mode, antialias=True)
            if self.crop is not None:
                batch = tvF.center_crop(batch, list(self.crop))
            for i, tensor in zip(members, batch):
                out[i] = tensor
        pixels = (torch.stack(out).float() - self.offset) / self.divisor
        return {"pixel_values": pixels.contiguous()}


def _supported(config: dict[str, Any]) -> bool:
    size = config.get("size") or {}
    resizes = bool(_value(config, "do_resize", True))
    size_ok = set(size) == {"shortest_edge"} or set(size) == {"height", "width"}
    crop_ok = not _value(config, "do_center_crop", False) or set(config.get("crop_size") or {}) == {"height", "width"}
    plain = all(not (k.startswith("do_") and v) or k in _KNOWN for k, v in config.items())
    return resizes and size_ok and crop_ok and plain and int(_value(config, "resample", 3)) in _RESAMPLE \
        and _value(config, "crop_pct", None) is None


def _probe_images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    shapes = [(375, 500), (500, 375), (224, 224), (97, 311), (480, 640)]
    return [Image.fromarray(np.asarray(Image.fromarray(rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)))
            for h, w in shapes]


def build(image_processor: Any) -> TensorImagePreprocessor | None:
    """A batched preprocessor equal to `image_processor` on probe images within `TOLERANCE`, or None."""
    config = image_processor.to_dict() if hasattr(image_processor, "to_dict") else None
    if not config or not _supported(config):
        return None
    try:
        fast = TensorImagePreprocessor(config)
        probes = _probe_images()
        reference = image_processor(images=probes, return_tensors="pt")["pixel_values"]
        ours = fast(probes)["pixel_values"]
    except Exception:  # noqa: BLE001 - anything unexpected: keep the checkpoint's processor
        return None
    if ours.shape != reference.shape or (ours - reference.float()).abs().max().item() > TOLERANCE:
        return None
    return fast
