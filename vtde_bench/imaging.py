"""Images: decoding to 8-bit RGB by the rules of the model family, and the batched preprocessing that equals
each checkpoint's own processor on any image size.

Decoding: 16-bit images are scaled to 8 bits, transparency is composited onto white (transformers'
`convert_to_rgb`), and plain JPEGs are decoded by torchvision straight into tensors where that gives
Pillow's pixels exactly.

Batched preprocessing: transformers' processors convert each PIL image to a contiguous CHW tensor and
normalise it image by image; most of their time goes to those copies. Here the images of a batch are
stacked once as uint8 (B, H, W, C), resized with the same kernel the processor uses (torchvision's
antialiased resize for the torchvision backend, Pillow's for the PIL backend), cropped by slicing, and
normalised in one fused operation. Sizes are computed as each reference computes them, and the
references differ: the resized long side is `int(s * long / short)` for transformers and torchvision
alike, but the centre-crop offset is floored by transformers and rounded (half to even) by
torchvision's `center_crop`, which open_clip uses. At 224 px a 640×427 photo lands one pixel apart
between the two. `rounding_sizes()` lists the photo sizes that hit every such case; `build` checks the
batched path against the processor on all of them before using it, and otherwise keeps the processor.
"""

from __future__ import annotations

import functools
import io
from typing import Any

import numpy as np
import torch
from PIL import Image


# ----------------------------------------------------------------------------- decoding


def decode_image(data: bytes) -> Image.Image:
    """Decode image bytes to an 8-bit RGB PIL image, by the rule of transformers' processors.

    16-bit and 32-bit integer images are scaled to 8 bits first: `convert("RGB")`,
    which the processors do, would clip them and turn them nearly white.
    Transparency is composited onto white (`to_rgb`).
    Raises whatever Pillow raises for a corrupt image (callers report the key).
    """
    return to_rgb(open_image(data))


def open_image(data: bytes) -> Image.Image:
    """Decode image bytes to a PIL image in its own mode (palette, alpha and CMYK kept), but 16-bit and 32-bit
    integer images scaled to 8-bit greyscale: the first step of every family's rule. open_clip's transforms take
    it from there (they resize, then `convert("RGB")`).
    """
    image = Image.open(io.BytesIO(data))
    image.load()
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(np.rint(array / top * 255.0), 0, 255).astype(np.uint8), mode="L")
    return image


def crop_box(data: bytes, box: tuple[float, float, float, float]) -> bytes:
    """The image cropped to `box` = (x, y, w, h) pixels, as PNG bytes (lossless: the crop's pixels, in the image's own
    mode). The box is cut as ARO's code cuts it, `Image.crop((x, y, x + w, y + h))`: Pillow rounds each edge, and a box
    reaching past the image is filled with zeros there."""
    x, y, w, h = box
    image = open_image(data)
    if image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA"):  # CMYK and the like, which PNG cannot hold
        image = to_rgb(image)
    out = io.BytesIO()
    crop = image.crop((x, y, x + w, y + h))
    if "transparency" in image.info:
        crop.info["transparency"] = image.info["transparency"]
    crop.save(out, format="PNG")
    return out.getvalue()


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the image's header, without decoding its pixels."""
    return Image.open(io.BytesIO(data)).size


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB pixels as transformers' `convert_to_rgb` makes them, which every transformers processor applies.

    An image with an alpha band (RGBA, LA, PA) or a transparency colour (a palette, greyscale or RGB
    PNG with a `tRNS` chunk) is composited onto white; any other mode is converted with
    `convert("RGB")`. Plain `convert("RGB")` would keep the colour stored under transparent pixels
    (often black) for alpha bands and ignore `tRNS` altogether.
    """
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def decode_image_array(data: bytes) -> Any:
    """`decode_image`'s pixels as an (H, W, 3) uint8 tensor, for the batched preprocessing.

    Plain 8-bit JPEGs (RGB or greyscale, by Pillow's reading of the header) are
    decoded by torchvision's libjpeg-turbo straight into a tensor, about 25% less
    work than Pillow plus a copy. That path is taken only where it gave exactly
    Pillow's pixels on the probe JPEGs of `_torchvision_jpeg_is_exact`; everything
    else, and any JPEG torchvision refuses, goes through `decode_image`, so errors
    read the same either way.
    """
    import numpy as np
    import torch

    if _plain_jpeg(data) and _torchvision_jpeg_is_exact():
        try:
            return _torchvision_jpeg(data)
        except RuntimeError:
            pass  # Pillow decides, and words the error
    return torch.from_numpy(np.array(decode_image(data)))


def _plain_jpeg(data: bytes) -> bool:
    """Whether the image is an 8-bit JPEG in RGB or greyscale, by Pillow's reading of its header (not its pixels):
    what torchvision's decoders take (a CMYK JPEG is not)."""
    header = Image.open(io.BytesIO(data))
    return header.format == "JPEG" and header.mode in ("RGB", "L")


def _torchvision_jpeg(data: bytes) -> Any:
    import warnings

    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        # torchvision 0.29 marks its image decoders deprecated in favour of TorchCodec; if they
        # go, the ImportError turns this path off (`_torchvision_jpeg_is_exact`).
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB).permute(1, 2, 0)


def probe_jpegs() -> list[bytes]:
    """Smooth JPEGs of odd sizes: colour with 4:2:0, 4:2:2 and 4:4:4 chroma subsampling, progressive, greyscale."""
    rng = np.random.default_rng(0)
    probes = [("RGB", {"subsampling": 2}), ("RGB", {"subsampling": 1}), ("RGB", {"subsampling": 0, "quality": 95}),
              ("RGB", {"progressive": True}), ("L", {})]
    blobs = []
    for k, (mode, options) in enumerate(probes):
        small = Image.fromarray(rng.integers(0, 256, (7, 9, 3), dtype=np.uint8))
        buffer = io.BytesIO()
        small.resize((61 + 20 * k, 47 + 13 * k), Image.BICUBIC).convert(mode).save(buffer, format="JPEG", **options)
        blobs.append(buffer.getvalue())
    return blobs


@functools.cache
def _torchvision_jpeg_is_exact() -> bool:
    """Whether torchvision decodes JPEGs to exactly Pillow's pixels here (both usually wrap libjpeg-turbo), on the
    `probe_jpegs`."""
    for blob in probe_jpegs():
        try:
            ours = _torchvision_jpeg(blob)
        except (ImportError, RuntimeError):  # a torchvision without its image decoders, or one that refuses
            return False
        if not np.array_equal(ours.numpy(), np.asarray(decode_image(blob))):
            return False
    return True


# ----------------------------------------------------------------------------- decoding on the model's device

def undecoded_jpeg(data: bytes) -> Any:
    """In the input workers, for decoding on the model's device: a plain 8-bit JPEG (RGB or greyscale by Pillow's
    reading of the header) as its bytes, a 1-D uint8 tensor; any other image (PNG, WebP, CMYK JPEG...) decoded here
    as `decode_image_array` decodes it, an (H, W, 3) uint8 tensor."""
    if _plain_jpeg(data):
        return torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return decode_image_array(data)


def decode_on_device(items: list[Any], device: Any) -> list[Any]:
    """(H, W, 3) uint8 images on `device`, from `undecoded_jpeg`'s items: the JPEGs decoded there in one batched call
    (nvjpeg on CUDA, libjpeg-turbo on the CPU), the images the workers decoded moved there."""
    out = [item.to(device, non_blocking=True) if item.ndim == 3 else None for item in items]
    jpegs = [i for i, item in enumerate(items) if item.ndim == 1]
    if jpegs:
        for i, image in zip(jpegs, _decode_jpegs([items[i] for i in jpegs], device)):
            out[i] = image.permute(1, 2, 0)
    return out


def _decode_jpegs(blobs: list[Any], device: Any) -> list[Any]:
    import warnings

    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # as in `_torchvision_jpeg`
        return decode_jpeg(blobs, mode=ImageReadMode.RGB, device=device)


@functools.cache
def device_jpeg_difference(device: str) -> int | None:
    """The largest difference, in 8-bit levels, between the JPEG decoder of `device` and Pillow over the
    `probe_jpegs`; None where the device has no JPEG decoder (or it refuses one of them)."""
    blobs = probe_jpegs()
    try:
        decoded = _decode_jpegs([torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs], device)
    except (ImportError, RuntimeError):
        return None
    return max(int((image.permute(1, 2, 0).cpu().int() - torch.from_numpy(np.array(decode_image(b))).int()).abs().max())
               for image, b in zip(decoded, blobs))


# ----------------------------------------------------------------------------- batched preprocessing


TOLERANCE = 1e-4  # max abs difference after normalisation: float rounding only, never a pixel moved
_KNOWN = {
    "do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor", "do_normalize",
    "image_mean", "image_std", "do_convert_rgb", "image_processor_type", "processor_class", "default_to_square",
    "input_data_format", "data_format", "return_tensors", "device", "disable_grouping", "crop_pct",
}
_RESAMPLE = {2: "BILINEAR", 3: "BICUBIC"}
BACKENDS = ("torchvision", "pil")  # transformers' two image-processor backends, by their `backend` property

# The centre-crop offset of (image - crop) pixels, per reference.
CROP_OFFSET = {
    "floor": lambda excess: excess // 2,  # transformers (both backends)
    "round": lambda excess: int(round(excess / 2.0)),  # torchvision's center_crop (half to even), open_clip
}

# COCO's and Flickr30k's commonest photo sizes (landscape and portrait), a 4:3 photo and an odd-sized
# portrait, as (width, height). Each is used with its long side L, L+1, L+2 and L+3, so that at every
# usual shortest edge the resized long side minus the crop takes every remainder mod 4, among them
# the one (3) where flooring and rounding the half offset disagree.
BASE_SIZES = ((640, 427), (427, 640), (500, 334), (500, 375), (97, 311))


def rounding_sizes() -> list[tuple[int, int]]:
    """(height, width) of the images every rounding case is checked on: `BASE_SIZES`, long side L..L+3."""
    sizes = []
    for width, height in BASE_SIZES:
        for extra in range(4):
            sizes.append((height + extra, width) if height > width else (height, width + extra))
    return sizes


def _value(config: dict[str, Any], key: str, default: Any = None) -> Any:
    value = config.get(key, default)
    return default if value is None else value


class TensorImagePreprocessor:
    """Resize (shortest edge or fixed size), optional centre crop, rescale and normalise, for a batch at once.

    Args:
        config: the image processor's `to_dict()`.
        resize_with: "torchvision" (antialiased tensor resize) or "pil" (Pillow's, image by image).
        crop_offset: how the centre crop's offset is rounded, a key of `CROP_OFFSET`.
    """

    def __init__(self, config: dict[str, Any], *, resize_with: str = "torchvision", crop_offset: str = "floor"):
        if resize_with not in BACKENDS or crop_offset not in CROP_OFFSET:
            raise ValueError(f"resize_with must be one of {BACKENDS} and crop_offset one of {tuple(CROP_OFFSET)}")
        size = config["size"]
        self.shortest_edge = size.get("shortest_edge")
        self.fixed = (size["height"], size["width"]) if "height" in size else None
        crop = config.get("crop_size") or {}
        self.crop = (crop["height"], crop["width"]) if _value(config, "do_center_crop", False) else None
        self.resample = _RESAMPLE[int(_value(config, "resample", 3))]
        self.resize_with = resize_with
        self.crop_offset = CROP_OFFSET[crop_offset]
        scale = float(_value(config, "rescale_factor", 1 / 255)) if _value(config, "do_rescale", True) else 1.0
        mean = np.array(_value(config, "image_mean", [0.0, 0.0, 0.0]), dtype=np.float32)
        std = np.array(_value(config, "image_std", [1.0, 1.0, 1.0]), dtype=np.float32)
        if not _value(config, "do_normalize", True):
            mean, std = np.zeros(3, np.float32), np.ones(3, np.float32)
        # One fused step, (x * scale - mean) / std = (x - mean / scale) / (std / scale), as the processors do.
        self.offset = torch.from_numpy(mean / scale).view(1, 3, 1, 1)
        self.divisor = torch.from_numpy(std / scale).view(1, 3, 1, 1)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) after the resize: the short side to `shortest_edge`, the long one `int(s * long / short)`."""
        if self.fixed is not None:
            return self.fixed
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(self.shortest_edge * long / short)
        return (new_long, self.shortest_edge) if width <= height else (self.shortest_edge, new_long)

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the centre crop of a resized (height, width) image."""
        if self.crop is None:
            return 0, 0, height, width
        crop_h, crop_w = self.crop
        return self.crop_offset(height - crop_h), self.crop_offset(width - crop_w), crop_h, crop_w

    def _resize(self, arrays: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Same-sized (H, W, 3) uint8 images → (B, 3, h, w) uint8."""
        if self.resize_with == "pil":
            resample = getattr(Image.Resampling, self.resample)
            resized = [np.asarray(Image.fromarray(a.numpy()).resize((size[1], size[0]), resample)) for a in arrays]
            return torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2)
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as tvF

        # (B, H, W, C) uint8 viewed as channels-last (B, C, H, W): one copy, and the fast resize kernel.
        batch = torch.stack(arrays).permute(0, 3, 1, 2)
        return tvF.resize(batch, list(size), interpolation=getattr(InterpolationMode, self.resample), antialias=True)

    def __call__(self, images: list[Image.Image | torch.Tensor]) -> dict[str, torch.Tensor]:
        """Images as PIL images or (H, W, 3) uint8 tensors (`data.decode_image_array`), in any mix."""
        arrays = [image if isinstance(image, torch.Tensor) else torch.from_numpy(np.array(to_rgb(image))) for image in images]
        out: list[torch.Tensor | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, array in enumerate(arrays):
            groups.setdefault((array.shape[0], array.shape[1]), []).append(i)
        for (height, width), members in groups.items():
            size = self.output_size(height, width)
            batch = self._resize([arrays[i] for i in members], size)
            top, left, crop_h, crop_w = self.crop_box(*size)
            batch = batch[:, :, top : top + crop_h, left : left + crop_w]
            for i, tensor in zip(members, batch):
                out[i] = tensor
        batch = torch.stack(out).float()  # on the images' device: the CPU, or the GPU that decoded them
        pixels = (batch - self.offset.to(batch.device)) / self.divisor.to(batch.device)
        return {"pixel_values": pixels.contiguous()}


def _supported(config: dict[str, Any]) -> bool:
    size = config.get("size") or {}
    resizes = bool(_value(config, "do_resize", True))
    size_ok = set(size) == {"shortest_edge"} or set(size) == {"height", "width"}
    crop = config.get("crop_size") or {}
    cropping = bool(_value(config, "do_center_crop", False))
    crop_ok = not cropping or set(crop) == {"height", "width"}
    if cropping and crop_ok and size_ok:
        # A crop larger than the resized image pads it; that case stays with the processor.
        short = size.get("shortest_edge")
        fits = (crop["height"] <= short and crop["width"] <= short) if short else \
            (crop["height"] <= size["height"] and crop["width"] <= size["width"])
        crop_ok = fits
    plain = all(not (k.startswith("do_") and v) or k in _KNOWN for k, v in config.items())
    return resizes and size_ok and crop_ok and plain and int(_value(config, "resample", 3)) in _RESAMPLE \
        and _value(config, "crop_pct", None) is None


def probe_images(sizes: list[tuple[int, int]] | None = None, seed: int = 0) -> list[Image.Image]:
    """Noise images of the given (height, width) sizes (default `rounding_sizes()`): a pixel moved shows at once."""
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes or rounding_sizes()]


def build(image_processor: Any) -> TensorImagePreprocessor | None:
    """A batched preprocessor equal to `image_processor` on every size of `rounding_sizes()`, or None."""
    config = image_processor.to_dict() if hasattr(image_processor, "to_dict") else None
    backend = getattr(image_processor, "backend", None)
    if not config or backend not in BACKENDS or not _supported(config):
        return None
    try:
        fast = TensorImagePreprocessor(config, resize_with=backend, crop_offset="floor")  # transformers floors
        probes = probe_images()
        reference = image_processor(images=probes, return_tensors="pt")["pixel_values"]
        ours = fast(probes)["pixel_values"]
    except Exception:  # noqa: BLE001 - anything unexpected: keep the checkpoint's processor
        return None
    if ours.shape != reference.shape or (ours - reference.float()).abs().max().item() > TOLERANCE:
        return None
    return fast
