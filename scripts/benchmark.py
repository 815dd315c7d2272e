"""Speed benchmark: what an evaluation costs beyond the model's forward passes (a script, not a test).

    python scripts/benchmark.py                     # both model sizes, 1,000 images x 5 captions
    python scripts/benchmark.py --sizes tiny --images 300 --out bench.json

Workload: synthetic 500x375 JPEGs with 5 captions each, as a retrieval task in the
hub parquet layout. Models: a CLIPModel with ViT-B/32 (or ViT-L/14) sizes and
random weights, and a tiny CLIP. Everything runs through the Python API in one
process, so interpreter start-up is not counted (it is reported separately); a
warm-up evaluate() on a separate 16-image workload pays the one-time imports
first, so (b) meets a cold embedding cache and data `datasets` has not yet converted.

  (a) the ceiling: the model's forward passes on ready tensors (images and captions)
  (b) vtde-bench, cold cache        (c) the plain loop a user writes by hand
  (d) vtde-bench, warm cache

Runs on the CPU or a GPU, and from a source tree on PYTHONPATH where only torch,
transformers and their needs are installed (no network).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

SIZES = {
    "tiny": dict(vision=dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
                 text=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64), projection_dim=16),
    "vit-b-32": dict(vision=dict(image_size=224, patch_size=32, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
                     text=dict(hidden_size=512, num_hidden_layers=12, num_attention_heads=8, intermediate_size=2048), projection_dim=512),
    "vit-l-14": dict(vision=dict(image_size=224, patch_size=14, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
                     text=dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072), projection_dim=768),
}
WORDS = "a an the photo picture of small big red green blue dog cat car tree house on in with near".split()


def make_workload(folder: Path, n: int, seed: int = 0) -> Path:
    """n JPEGs of 500x375 (smooth noise, so they compress like photos) with 5 captions each, and a card."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    images, captions = [], []
    for _ in range(n):
        small = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((500, 375), Image.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        images.append({"bytes": buffer.getvalue(), "path": None})
        captions.append([" ".join(rng.choice(WORDS, size=8)) for _ in range(5)])
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table({"image": images, "captions": captions})
    pq.write_table(table, folder / "test-00000-of-00001.parquet")
    card = folder / "bench.toml"
    card.write_text(f'name = "bench"\ntype = "retrieval"\nversion = 1\n[source]\npath = "."\nsplit = "test"\nnum_samples = {n}\n')
    return card


def make_model(folder: Path, size: str) -> Path:
    import helpers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    torch.manual_seed(0)
    tokenizer = helpers._clip_tokenizer(folder / "_tok")
    spec = SIZES[size]
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), max_position_embeddings=77, projection_dim=spec["projection_dim"], **spec["text"], **ids),
        vision_config=dict(projection_dim=spec["projection_dim"], **spec["vision"]),
        projection_dim=spec["projection_dim"],
    )
    side = spec["vision"]["image_size"]
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side}),
                              tokenizer=tokenizer)
    CLIPModel(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def timed(fn) -> tuple[float, object]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def ceiling(encoder, rows, batch_size: int) -> float:
    """(a): forward passes only, on tensors preprocessed beforehand (not timed)."""
    from vtde_bench.imaging import decode_image

    pixel_batches = [encoder.image_inputs([decode_image(r["image"]["bytes"]) for r in rows[i : i + batch_size]])
                     for i in range(0, len(rows), batch_size)]
    texts = [c for r in rows for c in r["captions"]]
    text_batches = [encoder.text_inputs(texts[i : i + 256]) for i in range(0, len(texts), 256)]

    def forward():
        for inputs in pixel_batches:
            encoder.embed_image_inputs(inputs)
        for inputs in text_batches:
            encoder.embed_text_inputs(inputs)

    return timed(forward)[0]


def hand_loop(folder: Path, batch_size: int, device: torch.device):
    """(c): what a user writes: read the data, processor + get_*_features, batch by batch, in one process."""
    import pyarrow.parquet as pq
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(folder).to(device).eval()
    processor = AutoProcessor.from_pretrained(folder)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    def loop(parquet: Path) -> None:
        rows = pq.read_table(parquet).to_pylist()
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            for i in range(0, len(rows), batch_size):
                images = [Image.open(io.BytesIO(r["image"]["bytes"])).convert("RGB") for r in rows[i : i + batch_size]]
                pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(device)
                model.get_image_features(pixel_values=pixels)
            texts = [c for r in rows for c in r["captions"]]
            for i in range(0, len(texts), 256):
                inputs = processor.tokenizer(texts[i : i + 256], padding=True, truncation=True, max_length=77, return_tensors="pt").to(device)
                model.get_text_features(**inputs)

    return loop


def bench_size(size: str, card: Path, warm_card: Path, rows, work: Path, batch_size: int, repeats: int) -> dict:
    """Each repeat measures (a), (b), (c), (d) in turn, (b) on a fresh copy of the workload and a fresh cache."""
    from vtde_bench import RunOptions, evaluate
    from vtde_bench.encoders import load_model

    folder = make_model(work / f"model-{size}", size)
    load_s, encoder = timed(lambda: load_model(folder))
    # Warm-up, not counted: kernels, and the one-time imports and set-up of a first evaluate() (start-up,
    # reported separately) on a small workload of its own, so (b) still meets a cold embedding cache
    # and data that `datasets` has not converted yet.
    evaluate(encoder, [str(warm_card)], output_dir=None, cache=False, bootstrap=0)
    loop = hand_loop(folder, batch_size, encoder.device)
    runs = []
    for k in range(repeats):
        copy = work / f"data-{size}-{k}"
        shutil.copytree(card.parent, copy)
        options = RunOptions(output_dir=None, cache_dir=work / f"cache-{size}-{k}", batch_size=batch_size, bootstrap=0)
        a = ceiling(encoder, rows, batch_size)
        b, _ = timed(lambda: evaluate(encoder, [str(copy / card.name)], options=options))
        c, _ = timed(lambda: loop(copy / "test-00000-of-00001.parquet"))
        d, _ = timed(lambda: evaluate(encoder, [str(copy / card.name)], options=options))
        runs.append({"a": a, "b": b, "c": c, "d": d})
    n = len(rows)
    median = {key: statistics.median(run[key] for run in runs) for key in "abcd"}
    return {
        "size": size, "device": str(encoder.device), "precision": encoder.precision, "images": n, "captions": 5 * n,
        "batch_size": batch_size, "load_model_s": load_s, "repeats": runs,
        "median_s": median,
        "images_per_s": {key: n / value for key, value in median.items()},
        # Ratios of the medians, and each ratio's range over the repeats.
        "ratios": {"a_over_b": median["a"] / median["b"], "c_over_b": median["c"] / median["b"], "b_over_d": median["b"] / median["d"]},
        "ratio_ranges": {
            name: [min(r[x] / r[y] for r in runs), max(r[x] / r[y] for r in runs)]
            for name, (x, y) in {"a_over_b": ("a", "b"), "c_over_b": ("c", "b"), "b_over_d": ("b", "d")}.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["vit-b-32", "tiny"], choices=sorted(SIZES))
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="measure each of (a)-(d) this many times; medians are reported")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)

    startup = subprocess.run([sys.executable, "-c", "import time; t = time.perf_counter(); import vtde_bench.api, vtde_bench.engine, vtde_bench.encoders, datasets; "
                              "print(time.perf_counter() - t)"], capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    import transformers

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        card = make_workload(work / "data", args.images)
        warm_card = make_workload(work / "warm-up", 16, seed=1)
        import pyarrow.parquet as pq

        rows = pq.read_table(work / "data" / "test-00000-of-00001.parquet").to_pylist()
        figures = [bench_size(size, card, warm_card, rows, work, args.batch_size, args.repeats) for size in args.sizes]
    report = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
                    "cpu_threads": torch.get_num_threads(), "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "import_s": float(startup.stdout.strip() or "nan"),
        "figures": figures,
    }
    for f in figures:
        r, lo_hi = f["ratios"], f["ratio_ranges"]
        span = {name: f"{lo:.2f}-{hi:.2f}" for name, (lo, hi) in lo_hi.items()}
        print(f"{f['size']:>9} on {f['device']} ({f['precision']}), medians of {len(f['repeats'])}: "
              f"a {f['images_per_s']['a']:.1f} img/s, b {f['images_per_s']['b']:.1f} img/s | "
              f"b/a throughput {r['a_over_b']:.3f} ({span['a_over_b']}) | b vs c {r['c_over_b']:.2f}x faster ({span['c_over_b']}) | "
              f"d vs b {r['b_over_d']:.1f}x faster ({span['b_over_d']})")
    print(f"start-up (import of vtde_bench.api, engine, models and datasets): {report['import_s']:.2f} s")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
