"""How far decoding on the model's device (`--decode gpu`) is from the input workers' decoding (a script, not a test).

    python scripts/decode_check.py --out decode.json               # on the GPU machine (scripts/gpu_benchmark.sh)
    python scripts/decode_check.py --device cpu --images 24        # the same code on the CPU: every figure exact

Photo-sized JPEGs of each kind the device decodes (4:2:0, 4:4:4, progressive, greyscale; 500x375, 640x427,
427x640, 333x501) are decoded both ways; reported per kind: the largest pixel difference (8-bit levels) and the
mean one; then a ViT-B/32-sized CLIP (random weights, bf16 on CUDA) embeds every image both ways, and the report
holds the smallest and mean cosine between the two embeddings of an image, and how often the two agree on the
image's nearest caption among 100 (top-1 agreement). `--decode auto` takes the device's decoder only within
`options.DEVICE_PIXEL_TOLERANCE` levels on its probe JPEGs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

KINDS = {"4:2:0": ("RGB", {"subsampling": 2, "quality": 90}), "4:4:4": ("RGB", {"subsampling": 0, "quality": 95}),
         "progressive": ("RGB", {"progressive": True, "quality": 90}), "greyscale": ("L", {"quality": 90})}
SIZES = [(500, 375), (640, 427), (427, 640), (333, 501)]


def jpegs(kind: str, n: int, seed: int) -> list[bytes]:
    """Smooth noise photos (they compress like photos) of the kind, sizes in turn."""
    import io

    mode, options = KINDS[kind]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        w, h = SIZES[i % len(SIZES)]
        small = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        buffer = io.BytesIO()
        small.resize((w, h), Image.BICUBIC).convert(mode).save(buffer, format="JPEG", **options)
        out.append(buffer.getvalue())
    return out


def main(argv: list[str] | None = None) -> int:
    import benchmark
    import datasets

    from vtde_bench import imaging
    from vtde_bench.data.rows import TaskData
    from vtde_bench.embedding import embed_images
    from vtde_bench.encoders.load import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=128, help="images of each kind")
    parser.add_argument("--size", default="vit-b-32", choices=sorted(benchmark.SIZES))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    report: dict = {"device": args.device, "torch": torch.__version__, "images_per_kind": args.images, "kinds": {},
                    "probe_difference": imaging.device_jpeg_difference(args.device)}
    blobs = {kind: jpegs(kind, args.images, seed=k) for k, kind in enumerate(KINDS)}
    for kind, items in blobs.items():
        encoded = [imaging.undecoded_jpeg(b) for b in items]
        on_device = imaging.decode_on_device(encoded, args.device)
        differences = [(d.cpu().int() - imaging.decode_image_array(b).int()).abs() for d, b in zip(on_device, items)]
        report["kinds"][kind] = {"max_pixel_difference": max(int(d.max()) for d in differences),
                                 "mean_pixel_difference": float(np.mean([float(d.float().mean()) for d in differences]))}

    with tempfile.TemporaryDirectory() as work:
        model = load_model(str(benchmark.make_model(Path(work) / "model", args.size)), device=args.device,
                           decode="cpu")
        every = [b for items in blobs.values() for b in items]
        ds = datasets.Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in every]},
                                        features=datasets.Features({"image": datasets.Image(decode=False)}))
        data = TaskData(dataset=ds, image_columns=("image",), keys=[str(i) for i in range(len(every))],
                        layout="parquet", location="memory")
        embeddings = {}
        for decoder in ("cpu", "gpu"):
            model.decoder = decoder  # `--decode gpu` refuses a CPU device; here the same path runs wherever it is
            embeddings[decoder] = embed_images(model, data, batch_size=64, chunk_rows=1 << 20).embeddings
        captions = model.encode_texts([" ".join(np.random.default_rng(i).choice(benchmark.WORDS, 8)) for i in range(100)])
        cosine = (embeddings["cpu"] * embeddings["gpu"]).sum(1)
        top1 = [(e @ captions.T).argmax(1) for e in (embeddings["cpu"], embeddings["gpu"])]
        report.update(model=args.size, precision=model.precision, images=len(every),
                      min_cosine=float(cosine.min()), mean_cosine=float(cosine.mean()),
                      top1_agreement=float((top1[0] == top1[1]).float().mean()))
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
