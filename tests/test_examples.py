"""The example scripts run, offline, and print what their docstrings promise.

They run as a user runs them (`python examples/X.py`, a fresh interpreter), all of them at
once to share the two cores' import time; each builds its own tiny model.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ("api.py", "trainer_callback.py", "custom_loop.py", "open_clip_loop.py")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    # conftest has set the offline variables and a private embedding cache; COLUMNS keeps rich's table unclipped.
    # One torch thread each: three processes share the cores, and OpenMP threads that wait for a busy
    # core spin (tens of times slower on a loaded 2-core machine).
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cwd = tmp_path_factory.mktemp("examples")  # anything an example leaves behind stays out of the repository
    procs = {name: subprocess.Popen([sys.executable, str(ROOT / "examples" / name)], cwd=cwd, env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE) for name in EXAMPLES}
    done = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return done


def check(run: subprocess.CompletedProcess) -> str:
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_api_example(runs):
    out = check(runs["api.py"])
    assert "zeroshot classification (%)" in out and "retrieval (%)" in out and "shapes-retrieval (limit)" in out
    assert re.search(r"shapes-classification: wrote results/demo-checkpoint-[0-9a-f]{8}/shapes-classification\.json", out)
    assert re.search(r"shapes-classification: main score 0\.\d{4} \(acc1\)", out)
    assert re.search(r"^\s*model\s+task\s+metric\s+value\s+main$", out, re.M)  # the DataFrame


def test_trainer_callback_example(runs):
    out = check(runs["trainer_callback.py"])
    assert "locked towers reused: images" in out
    for step in (4, 8, 12):
        assert re.search(rf"^step {step}: eval_zeroshot_shapes-classification_acc1 = 0\.\d{{4}}  "
                         rf"eval_zeroshot_shapes-retrieval_mean_recall@1 = 0\.\d{{4}}$", out, re.M)
    assert "model back in training mode: True" in out


def test_custom_loop_example(runs):
    out = check(runs["custom_loop.py"])
    for step in (4, 8, 12):
        assert re.search(rf"^step {step}: loss \d+\.\d{{3}}  shapes-classification acc1 = 0\.\d{{4}}  "
                         rf"shapes-retrieval mean_recall@1 = 0\.\d{{4}}$", out, re.M)
    assert re.search(r"shapes-retrieval\s+mean_recall@1\s+0\.\d+\s+True", out)


def test_open_clip_loop_example(runs):
    out = check(runs["open_clip_loop.py"])
    for step in (3, 6):
        assert re.search(rf"^step {step}: loss \d+\.\d{{3}}  shapes-classification acc1 = 0\.\d{{4}}  "
                         rf"shapes-retrieval mean_recall@1 = 0\.\d{{4}}$", out, re.M)
    assert "preprocessing: open_clip transform" in out
