"""Start-up cost of a short run (a script, not a test): where a CI gate's fixed seconds go.

    python scripts/startup_benchmark.py                   # ViT-B/32 sizes, 32 images x 5 captions, 3 repeats
    python scripts/startup_benchmark.py --size tiny --images 16 --out startup.json

A short retrieval run (`vtde-bench run`, fp32 on the CPU; embedding cache cold, a fresh --cache-dir each time, or
with --warm one cache a first untimed run filled, as a CI gate keeps it) is timed as a whole process, beside the floors it cannot go below, each a process of its own:

  - `import torch`;
  - the third-party imports every transformers run makes (torch, torchvision, transformers' image processing and
    CLIP modules, datasets), which are not vtde-bench's to cut;

and the run's own result file says how its seconds split (model loading, data, embedding). What is vtde-bench's
is the rest: whole process − third-party imports − the work (embedding and metrics). With `--src DIR` the run
uses the vtde_bench package of another source tree (an older commit, for a before/after figure).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

THIRD_PARTY = ("import torch, torchvision, datasets, transformers, transformers.image_processing_utils, "
               "transformers.models.auto.processing_auto, transformers.models.clip")


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    import benchmark

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="vit-b-32", choices=sorted(benchmark.SIZES))
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="medians over this many runs of each command")
    parser.add_argument("--src", type=Path, help="the source tree whose vtde_bench runs (default: this one)")
    parser.add_argument("--warm", action="store_true",
                        help="one embedding cache for every run, filled by an untimed first run (a CI gate's cache)")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="vtde-startup-"))
    try:
        card = benchmark.make_workload(work / "data", args.images)
        model = benchmark.make_model(work / "model", args.size)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "PYTHONPATH": str((args.src or HERE.parent).resolve())}
        floors = {"import_torch_s": [sys.executable, "-c", "import torch"],
                  "third_party_imports_s": [sys.executable, "-c", THIRD_PARTY]}
        figures: dict[str, list[float]] = {name: [] for name in (*floors, "whole_process_s")}
        splits: list[dict[str, float]] = []

        def run(out: Path, cache: Path) -> list[str]:
            return [sys.executable, "-m", "vtde_bench", "run", "--model", str(model), "--tasks", str(card), "--output",
                    str(out), "--cache-dir", str(cache), "--bootstrap", "0", "--device", "cpu", "--precision", "fp32"]

        if args.warm:
            timed(run(work / "out-warm-up", work / "cache"), env)
        for i in range(args.repeats):
            for name, command in floors.items():
                figures[name].append(timed(command, env))
            out, cache = work / f"out-{i}", work / ("cache" if args.warm else f"cache-{i}")
            figures["whole_process_s"].append(timed(run(out, cache), env))
            (result,) = out.glob("*/bench.json")
            splits.append(json.loads(result.read_text())["run"]["timings"])
        medians = {name: statistics.median(values) for name, values in figures.items()}
        for key in ("load_model_s", "load_data_s", "embed_images_s", "embed_texts_s", "metrics_s"):
            medians[key] = statistics.median(s[key] for s in splits)
        work_s = medians["embed_images_s"] + medians["embed_texts_s"] + medians["metrics_s"]
        report = {
            "size": args.size, "images": args.images, "repeats": args.repeats, "cache": "warm" if args.warm else "cold",
            "src": str(args.src or HERE.parent),
            **{k: round(v, 3) for k, v in medians.items()},
            "work_s": round(work_s, 3),
            "beyond_import_torch_and_work_s": round(medians["whole_process_s"] - medians["import_torch_s"] - work_s, 3),
            "ours_s": round(medians["whole_process_s"] - medians["third_party_imports_s"] - work_s, 3),
        }
        print(json.dumps(report, indent=1))
        if args.out:
            args.out.write_text(json.dumps(report, indent=1) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
