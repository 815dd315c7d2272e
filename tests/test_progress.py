"""What a log shows while vtde-bench works, and what Ctrl-C says it kept (issue #14 item 5).

When stdout is not a terminal, the demo and a 10,000-image run printed nothing for minutes, so CI looked hung.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from rich.console import Console

import helpers
from helpers import COLOUR_NAMES
from vtde_bench.render.console import RichProgress

TESTS = Path(__file__).resolve().parent


def test_a_log_gets_a_line_per_stage_and_periodic_counts_with_rate_and_eta():
    buffer = io.StringIO()
    progress = RichProgress(Console(file=buffer, force_terminal=False, width=200), every_s=0.0)
    with progress.bar("Embedding images", total=10) as bar:
        for _ in range(5):
            time.sleep(0.01)
            bar.advance(2)
    with progress.bar("Loading model m", total=None):
        pass
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "Embedding images ..."
    assert lines[1].startswith("Embedding images: 2/10 (20%), ") and "/s, ETA 0:00:0" in lines[1]
    assert lines[5].startswith("Embedding images: 10/10 (100%), ")
    assert lines[6].startswith("Embedding images: done, 10/10 (100%) in ") and lines[6].endswith("/s")
    assert lines[7:] == ["Loading model m ..."]  # a stage without a count says only that it started


def test_a_run_whose_output_is_a_log_says_what_it_is_doing(tiny_vtde, colour_rows, tmp_path):
    card = helpers.colour_card(tmp_path, colour_rows, classnames=COLOUR_NAMES)
    done = subprocess.run([sys.executable, "-m", "vtde_bench", "run", "--model", str(tiny_vtde), "--tasks", str(card),
                           "--workers", "0", "--bootstrap", "0", "--no-cache", "--output-dir", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    log = done.stderr
    for line in (f"Loading model {tiny_vtde} ...", "Loading data for colours ...", "Embedding images ...",
                 f"Embedding images: done, {len(colour_rows)}/{len(colour_rows)} (100%) in "):
        assert line in log, log


SLOW_CLI = textwrap.dedent("""
    import sys, time
    import vtde_bench.encoders.hf as models

    forward = models.HFDualEncoder.embed_image_inputs
    def slow(self, inputs):
        time.sleep(0.4)
        return forward(self, inputs)
    models.HFDualEncoder.embed_image_inputs = slow
    from vtde_bench.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_ctrl_c_says_how_many_chunks_were_kept_and_a_rerun_resumes(tiny_vtde, colour_rows, tmp_path):
    card = helpers.colour_card(tmp_path, colour_rows * 4, classnames=COLOUR_NAMES)
    cache = tmp_path / "cache"
    args = ["run", "--model", str(tiny_vtde), "--tasks", str(card), "--workers", "0", "--bootstrap", "0", "--batch-size", "4",
            "--chunk-rows", "8", "--cache-dir", str(cache), "--output-dir", str(tmp_path / "out")]
    proc = subprocess.Popen([sys.executable, "-c", SLOW_CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(cache.glob("*/*/chunk-*.sha256")) and time.monotonic() < deadline:  # a first chunk is saved
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    message = err.strip().splitlines()[-1]
    assert "interrupted while embedding images;" in message and "chunks saved, rerun to resume" in message, err
    saved = int(message.split("; ")[1].split(" of ")[0])
    assert saved >= 1 and not list((tmp_path / "out").glob("*/*.json"))  # no result from a killed run
    again = subprocess.run([sys.executable, "-m", "vtde_bench", *args], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{saved} of " in again.stderr and "chunks of image embeddings read from the cache" in again.stderr
