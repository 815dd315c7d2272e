"""The batched preprocessing against each processor, on every rounding case of photo sizes, and transparency.

Guards issue #13 items 1 and 2: the crop offset was rounded where transformers floors it (one pixel
off on 640×427, 427×640 and 500×334 photos at 224 px), and transparent PNG pixels took the colour
stored under them on one path and white on the other.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessor, SiglipImageProcessor, ViTImageProcessor
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

import helpers
from vtde_bench import imaging
from vtde_bench.imaging import decode_image, decode_image_array, to_rgb

STYLES = {  # (torchvision-backed class, PIL-backed class, size arguments for shortest edge s)
    "clip": (CLIPImageProcessor, CLIPImageProcessorPil,
             lambda s: {"size": {"shortest_edge": s}, "crop_size": {"height": s, "width": s}}),
    "vit": (ViTImageProcessor, ViTImageProcessorPil, lambda s: {"size": {"height": s, "width": s}}),
    "siglip": (SiglipImageProcessor, SiglipImageProcessorPil, lambda s: {"size": {"height": s, "width": s}}),
}


def processor(style: str, backend: str, s: int):
    torchvision_cls, pil_cls, sizes = STYLES[style]
    proc = (torchvision_cls if backend == "torchvision" else pil_cls)(**sizes(s))
    assert proc.backend == backend
    return proc


def test_the_shared_list_holds_every_crop_remainder():
    """At each usual shortest edge, resized long side − crop takes all remainders mod 4; 3 is where floor and round differ."""
    for s in (224, 256, 384):
        remainders = {(int(s * max(h, w) / min(h, w)) - s) % 4 for h, w in imaging.rounding_sizes()}
        assert remainders == {0, 1, 2, 3}, s
    assert {(427, 640), (640, 427), (334, 500), (375, 500), (311, 97)} <= set(imaging.rounding_sizes())


@pytest.mark.parametrize("style", sorted(STYLES))
@pytest.mark.parametrize("backend", imaging.BACKENDS)
@pytest.mark.parametrize("s", [224, 256, 384])
def test_batched_path_equals_the_processor_on_every_rounding_size(style, backend, s):
    proc = processor(style, backend, s)
    fast = imaging.TensorImagePreprocessor(proc.to_dict(), resize_with=backend, crop_offset="floor")
    images = imaging.probe_images(seed=1)  # not the probe `build` uses
    reference = proc(images=images, return_tensors="pt")["pixel_values"]
    ours = fast(images)["pixel_values"]
    assert ours.shape == reference.shape
    assert (ours - reference).abs().max().item() <= imaging.TOLERANCE


@pytest.mark.parametrize("style", sorted(STYLES))
@pytest.mark.parametrize("backend", imaging.BACKENDS)
def test_build_accelerates_each_style_and_backend(style, backend):
    fast = imaging.build(processor(style, backend, 224))
    assert fast is not None and fast.resize_with == backend


def test_a_rounded_crop_offset_is_one_pixel_off_and_the_probe_refuses_it():
    """The old arithmetic (torchvision's center_crop) on the 640×427 case: a pixel apart, caught by `build`."""
    from torchvision.transforms.v2 import functional as tvF

    proc = processor("clip", "torchvision", 224)
    rounded = imaging.TensorImagePreprocessor(proc.to_dict(), crop_offset="round")
    assert rounded.crop_box(224, 335) == (0, 56, 224, 224)  # round(55.5) = 56
    assert imaging.TensorImagePreprocessor(proc.to_dict()).crop_box(224, 335) == (0, 55, 224, 224)
    photo = imaging.probe_images([(427, 640)])
    reference = proc(images=photo, return_tensors="pt")["pixel_values"]
    assert (rounded(photo)["pixel_values"] - reference).abs().max() > 1.0
    # "round" is torchvision's own center_crop, on every size.
    for h, w in imaging.rounding_sizes():
        resized = torch.zeros(3, *rounded.output_size(h, w))
        top, left, _, _ = rounded.crop_box(*resized.shape[1:])
        marked = resized.clone()
        marked[:, top, left] = 1.0
        assert tvF.center_crop(marked, [224, 224])[:, 0, 0].eq(1.0).all()

    class RoundingProcessor(CLIPImageProcessor):
        def center_crop(self, image, size, **kwargs):
            return tvF.center_crop(image, [size.height, size.width])

    assert imaging.build(RoundingProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})) is None


def test_a_crop_larger_than_the_resized_image_stays_with_the_processor():
    proc = CLIPImageProcessor(size={"shortest_edge": 200}, crop_size={"height": 224, "width": 224})
    assert imaging.build(proc) is None


def _png(image: Image.Image, **options) -> bytes:
    return helpers.encode(image, "PNG", **options)


def transparent_pngs() -> dict[str, bytes]:
    """Every kind of PNG transparency, each with colours stored under its transparent pixels."""
    rng = np.random.default_rng(3)
    base = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    alpha = Image.fromarray(rng.integers(0, 256, (37, 53), dtype=np.uint8))
    grey = base.convert("L")
    palette = base.quantize(16)
    return {
        "P with tRNS": _png(palette, transparency=3),
        "RGB with tRNS": _png(base, transparency=tuple(int(x) for x in np.asarray(base)[0, 0])),
        "L with tRNS": _png(grey, transparency=int(np.asarray(grey)[0, 0])),
        "LA": _png(Image.merge("LA", [grey, alpha])),
        "RGBA": _png(Image.merge("RGBA", [*base.split(), alpha])),
        "P with an alpha per palette entry": _png(palette, transparency=bytes(range(0, 256, 16))),
        "P without transparency": _png(palette),
    }


@pytest.mark.parametrize("kind", list(transparent_pngs()))
@pytest.mark.filterwarnings("ignore:Palette images with Transparency")
def test_transparency_follows_transformers_convert_to_rgb(kind):
    from transformers.image_transforms import convert_to_rgb

    blob = transparent_pngs()[kind]
    raw = Image.open(io.BytesIO(blob))
    expected = np.asarray(convert_to_rgb(raw, return_numpy=True))
    assert np.array_equal(np.asarray(decode_image(blob)), expected)
    assert np.array_equal(decode_image_array(blob).numpy(), expected)
    if kind != "P without transparency":
        assert not np.array_equal(np.asarray(raw.convert("RGB")), expected)  # the rule matters for this image


@pytest.mark.parametrize("backend", imaging.BACKENDS)
def test_both_paths_give_the_processors_pixels_for_transparent_pngs(backend):
    """The processor fed the file as opened (its own convert_to_rgb) = our batched path = our processor path."""
    proc = processor("clip", backend, 32)
    fast = imaging.build(proc)
    assert fast is not None
    blobs = list(transparent_pngs().values())
    reference = proc(images=[Image.open(io.BytesIO(b)) for b in blobs], return_tensors="pt")["pixel_values"]
    batched = fast([decode_image_array(b) for b in blobs])["pixel_values"]
    via_processor = proc(images=[decode_image(b) for b in blobs], return_tensors="pt")["pixel_values"]
    assert (batched - reference).abs().max().item() <= imaging.TOLERANCE
    assert torch.equal(via_processor, reference)


def test_to_rgb_leaves_opaque_images_as_convert_does():
    rng = np.random.default_rng(0)
    for mode in ("L", "P", "CMYK", "RGB", "1"):
        image = Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)).convert(mode)
        assert np.array_equal(np.asarray(to_rgb(image)), np.asarray(image.convert("RGB"))), mode


def test_photo_sized_images_embed_as_through_the_processor(tiny_clip, tmp_path):
    """End to end through the data loader and the workers: 640×427-style JPEGs and PNGs embed the same
    through the batched path as through the checkpoint's processor (the old rounded offset did not)."""
    from vtde_bench.data import load_task_data
    from vtde_bench.embedding import embed_images
    from vtde_bench.encoders import load_model
    from vtde_bench.tasks import load_card

    rng = np.random.default_rng(5)
    sizes = [(640, 427), (427, 640), (500, 334), (333, 500), (97, 311), (641, 427)]
    rows = []
    for i in range(12):
        w, h = sizes[i % len(sizes)]
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        rows.append((helpers.encode(Image.fromarray(pixels), "JPEG" if i % 2 else "PNG"), i % 6))
    data = load_task_data(load_card(helpers.colour_card(tmp_path, rows, name="photos")))
    encoder = load_model(tiny_clip, device="cpu")
    assert encoder.batched_images is not None
    batched = embed_images(encoder, data, batch_size=5, workers=1, chunk_rows=1024).embeddings
    fast, encoder.batched_images = encoder.batched_images, None
    plain = embed_images(encoder, data, batch_size=5, workers=1, chunk_rows=1024).embeddings
    torch.testing.assert_close(batched, plain, atol=1e-5, rtol=0)
    fast.crop_offset = imaging.CROP_OFFSET["round"]
    encoder.batched_images = fast
    rounded = embed_images(encoder, data, batch_size=5, workers=0, chunk_rows=1024).embeddings
    assert (rounded - plain).abs().max() > 1e-3
