"""scripts/benchmark.py, through scripts/gpu_benchmark.sh (a smoke run: it works and its figures agree; no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_benchmark_script_runs_the_benchmark_and_its_figures_agree(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_benchmark.sh"), str(tmp_path), "--sizes", "tiny",
                           "--images", "24", "--batch-size", "8", "--repeats", "2"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "transformers" in done.stdout and "tiny on cpu (fp32), medians of 2" in done.stdout
    report = json.loads((tmp_path / "gpu-benchmark.json").read_text())
    [figure] = report["figures"]
    assert figure["images"] == 24 and figure["captions"] == 120 and len(figure["repeats"]) == 2
    median = figure["median_s"]
    assert all(value > 0 for run in figure["repeats"] for value in run.values())
    assert figure["ratios"]["c_over_b"] == median["c"] / median["b"]
    assert figure["images_per_s"]["b"] == 24 / median["b"]
    low, high = figure["ratio_ranges"]["b_over_d"]
    assert low <= high and report["machine"]["torch"]
