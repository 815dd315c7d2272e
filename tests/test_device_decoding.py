"""`--decode gpu`: JPEGs left encoded in the input workers, decoded and preprocessed on the model's device.

There is no GPU here, so the device path runs on the CPU, where torchvision's decoder is libjpeg-turbo: the same
code (`imaging.undecoded_jpeg` in the workers, `imaging.decode_on_device` and the batched preprocessing in the main
process) must give exactly the workers' own pixels and embeddings, on photo-sized JPEGs of every kind the device
decodes (4:2:0, 4:4:4, progressive, greyscale) beside the images it leaves to the CPU (PNG, CMYK JPEG, WebP).
How far nvjpeg's pixels are from these is measured on the GPU machine (scripts/gpu_benchmark.sh).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import helpers
from vtde_bench import imaging
from vtde_bench.data.rows import TaskData


def photos() -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    sizes = [(640, 427), (427, 640), (500, 375), (333, 501), (640, 480), (375, 500)]
    kinds = [("RGB", "JPEG", {"subsampling": 2}), ("RGB", "JPEG", {"subsampling": 0, "quality": 95}),
             ("RGB", "JPEG", {"progressive": True}), ("L", "JPEG", {}), ("CMYK", "JPEG", {}), ("RGB", "PNG", {}),
             ("RGB", "WEBP", {"quality": 90})]
    for i, (mode, fmt, options) in enumerate(kinds * 2):
        w, h = sizes[i % len(sizes)]
        small = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        out.append(helpers.encode(small.resize((w, h), Image.BICUBIC).convert(mode), fmt, **options))
    return out


def test_the_workers_leave_plain_jpegs_encoded_and_decode_the_rest():
    blobs = photos()
    items = [imaging.undecoded_jpeg(b) for b in blobs]
    formats = [(Image.open(io.BytesIO(b)).format, Image.open(io.BytesIO(b)).mode) for b in blobs]
    assert [item.ndim for item in items] == [1 if f == "JPEG" and m in ("RGB", "L") else 3 for f, m in formats]
    decoded = imaging.decode_on_device(items, "cpu")
    for image, blob in zip(decoded, blobs):
        assert torch.equal(image, imaging.decode_image_array(blob))  # libjpeg-turbo both ways: every pixel


def test_the_cpus_decoder_is_pillows_to_the_level():
    assert imaging.device_jpeg_difference("cpu") == 0


def test_device_decoding_embeds_as_the_workers_do(tmp_path, tiny_clip):
    import datasets

    from vtde_bench.embedding import embed_images
    from vtde_bench.encoders.load import load_model

    model = load_model(str(tiny_clip), device="cpu")
    assert model.decoder == "cpu" and model.describe("images")["decoder"] == "cpu"  # auto, without CUDA
    ds = datasets.Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in photos()]},
                                    features=datasets.Features({"image": datasets.Image(decode=False)}))
    data = TaskData(dataset=ds, image_columns=("image",), keys=[str(i) for i in range(len(ds))], layout="parquet",
                    location="memory")
    on_cpu = embed_images(model, data, batch_size=5, workers=0, chunk_rows=1024)
    cpu_key = model.cache_key("images")
    model.decoder = "gpu"  # the device path, on this CPU
    for workers in (0, 2):
        on_device = embed_images(model, data, batch_size=5, workers=workers, chunk_rows=1024)
        assert on_device.indices == on_cpu.indices
        assert torch.allclose(on_device.embeddings, on_cpu.embeddings, atol=1e-6, rtol=0)
    assert model.cache_key("images") != cpu_key  # cached embeddings of one decoder never serve the other
    assert model.describe("images")["decoder"] == "gpu"


def test_decode_gpu_without_cuda_is_a_clear_error(tmp_path, tiny_clip, capsys):
    from vtde_bench.cli import main

    code = main(["run", "--model", str(tiny_clip), "--tasks", "shapes-retrieval", "--decode", "gpu", "--device", "cpu",
                 "--output", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--decode gpu needs a CUDA device; use --decode cpu or auto" in err
    assert not (tmp_path / "out").exists()


def test_open_clip_decodes_on_the_cpu_only(tiny_open_clip):
    from vtde_bench.encoders.load import load_model
    from vtde_bench.errors import UserError

    with pytest.raises(UserError, match="--decode gpu applies to transformers checkpoints"):
        load_model(f"local-dir:{tiny_open_clip}", device="cpu", decode="gpu")


def test_the_decode_check_script_finds_the_cpu_path_exact(tmp_path):
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import decode_check

    assert decode_check.main(["--device", "cpu", "--images", "2", "--size", "tiny", "--out", str(tmp_path / "d.json")]) == 0
    report = json.loads((tmp_path / "d.json").read_text())
    assert set(report["kinds"]) == {"4:2:0", "4:4:4", "progressive", "greyscale"}
    assert all(k["max_pixel_difference"] == 0 for k in report["kinds"].values()) and report["probe_difference"] == 0
    assert report["images"] == 8 and report["top1_agreement"] == 1.0 and report["min_cosine"] > 0.99999
