"""Tables never cut a number or a name, in a real pseudo-terminal at 60, 80 and 120 columns, or through a pipe.

Guards issue #14 item 4: at 60 and 100 columns the leaderboard showed `94…`, two different tasks as `mysha…`,
and the demo's trained and untrained rows both as `vtde…`; piped output was capped near 160 columns.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

import helpers
from helpers import write_result
from vtde_bench.cli import main

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}  # rich would believe these over the tty
    env["TERM"] = "xterm-256color"
    return env


def on_terminal(command: list[str], columns: int) -> str:
    """Run `command` with stdout and stderr on a pseudo-terminal `columns` wide; what it shows, as text."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=_env(), close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child has closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=300) == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    os.close(master)
    return ANSI.sub("", b"".join(chunks).decode())


def in_terminal(argv: list[str], columns: int) -> str:
    """`vtde-bench ARGV` on a pseudo-terminal."""
    return on_terminal([sys.executable, "-m", "vtde_bench", *argv], columns)


def assert_whole(text: str, columns: int | None, words: list[str]) -> None:
    assert "…" not in text, text
    if columns is not None:
        assert max(len(line) for line in text.splitlines()) <= columns, text
    for word in words:
        assert word in text, f"{word!r} is not shown whole:\n{text}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_vtde, tiny_clip, colour_rows, caption_rows):
    """Both tiny models on a classification and a retrieval task, with long task names."""
    root = tmp_path_factory.mktemp("terminal")
    cls = helpers.colour_card(root / "cards", colour_rows, name="my-shapes-classification-long-name")
    ret = root / "cards" / "my-shapes-retrieval-long-name.toml"
    helpers.write_webdataset(root / "cards" / "caps", "test", caption_rows, kind="retrieval")
    helpers.write_card(ret, name="my-shapes-retrieval-long-name", kind="retrieval",
                       source={"path": "caps", "split": "test", "num_samples": len(caption_rows)})
    for model in (tiny_vtde, tiny_clip):
        assert main(["run", "--model", str(model), "--tasks", str(cls), str(ret), "--workers", "0", "--bootstrap", "50",
                     "--output-dir", str(root / "results")]) == 0
    return root, [str(cls), str(ret)]


def _scores(root: Path) -> list[str]:
    """Every main score as the tables print it (two decimals), and every model slug and task name."""
    words = []
    for path in (root / "results").glob("*/*.json"):
        data = json.loads(path.read_text())
        words += [f"{100 * data['main_score']:.2f}", data["model"]["slug"], data["task"]["name"]]
    return words


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_the_leaderboard_fits_the_terminal_without_cutting(runs, columns):
    root, _ = runs
    text = in_terminal(["leaderboard", str(root / "results"), "--no-published"], columns)
    assert_whole(text, columns, _scores(root))


SHOW_RESULTS = "import sys; from vtde_bench.render.console import print_results; from vtde_bench.results import read_task_results; " \
               "print_results(read_task_results(sys.argv[1]))"


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_the_results_table_fits_the_terminal_without_cutting(runs, columns):
    """The table `run` prints (`print_results`), of both models' results."""
    root, _ = runs
    text = on_terminal([sys.executable, "-c", SHOW_RESULTS, str(root / "results")], columns)  # no torch: seconds, not ten
    assert_whole(text, columns, _scores(root))


def test_run_itself_prints_a_table_that_fits(runs, tiny_vtde):
    root, cards = runs
    # The results exist: `run` reuses them, and prints the table.
    shown = in_terminal(["run", "--model", str(tiny_vtde), "--tasks", *cards, "--output-dir", str(root / "results")], 60)
    text = shown[shown.index("zeroshot classification (%)"):]  # the tables, after the (transient) progress bars
    (slug,) = {p.parent.name for p in (root / "results").glob("tiny-vtde-*/*.json")}
    assert_whole(text, 60, [slug, "my-shapes-classification-long-name", "my-shapes-retrieval-long-name"])


def test_a_pipe_has_no_width_limit(tmp_path):
    """Through a pipe (a log, CI) the whole table is written, however wide: nothing capped at 160 columns."""
    metrics = {"acc1": 0.5, "acc5": 0.9, "mean_per_class_recall": 0.5}
    names = [f"a-task-with-a-rather-long-name-{i:02d}" for i in range(8)]
    for name in names:
        write_result(tmp_path, slug="model-with-a-long-name-0123456789", task=name, metrics=metrics)
    done = subprocess.run([sys.executable, "-m", "vtde_bench", "leaderboard", str(tmp_path), "--no-published"],
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert_whole(done.stdout, None, names + ["model-with-a-long-name-0123456789", "50.00"])
    assert max(len(line) for line in done.stdout.splitlines()) > 300  # one row, every task a column
