"""`vtde-bench run` end to end: real tiny checkpoints, fixture datasets on disk, files asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import helpers
from helpers import COLOUR_NAMES
from vtde_bench.cli import main


def run(*args: str) -> int:
    return main(["run", "--workers", "0", *args])


@pytest.mark.parametrize("fixture", ["tiny_vtde", "tiny_clip", "tiny_siglip"])
def test_run_writes_results_and_samples(fixture, request, cards, tmp_path, capsys, colour_rows, caption_rows):
    model = request.getfixturevalue(fixture)
    out = tmp_path / "results"
    # Its own empty cache: throughput is reported only for embeddings computed in the run.
    assert run("--model", str(model), "--tasks", *map(str, cards), "--output-dir", str(out), "--cache-dir", str(tmp_path / "cache")) == 0
    (folder,) = out.iterdir()
    assert folder.name.startswith(model.name + "-") and len(folder.name) == len(model.name) + 9

    cls = json.loads((folder / "colours.json").read_text())
    assert cls["schema_version"] == 2
    assert cls["task"] == {"name": "colours", "version": 1, "type": "zeroshot_classification", "main_metric": "acc1", "card": str(Path(cards[0]).resolve())}
    assert set(cls["metrics"]) == {"acc1", "acc5", "mean_per_class_recall"}
    assert all(0.0 <= v <= 1.0 for v in cls["metrics"].values())
    assert cls["main_score"] == cls["metrics"]["acc1"]
    assert set(cls["per_class_recall"]) == set(COLOUR_NAMES)
    assert cls["dataset"]["num_images"] == len(colour_rows) and cls["dataset"]["layout"] == "parquet"
    assert len(cls["dataset"]["fingerprint"]) == 64 and len(cls["model"]["weights_fingerprint"]) == 64
    assert cls["model"]["num_parameters"] > 0 and cls["model"]["embedding_dim"] == (32 if fixture == "tiny_siglip" else 16)
    assert cls["run"]["precision"] == "fp32" and cls["run"]["device"] == "cpu" and cls["run"]["limit"] is None
    assert {"torch", "transformers", "datasets", "vtde_bench"} <= set(cls["run"]["versions"])
    assert cls["run"]["timings"]["images_per_s"] > 0
    assert set(cls["intervals"]) == set(cls["metrics"])
    assert all(lo <= cls["metrics"][m] <= hi for m, (lo, hi) in cls["intervals"].items())

    samples = pd.read_parquet(folder / "colours.samples.parquet")
    assert len(samples) == len(colour_rows)
    assert list(samples["label"]) == [label for _, label in colour_rows]
    assert all(len(top) == 5 for top in samples["top5"])
    assert (samples["rank"] == 1).mean() == pytest.approx(cls["metrics"]["acc1"])

    ret = json.loads((folder / "captions.json").read_text())
    n_captions = sum(len(c) for _, c in caption_rows)
    assert ret["dataset"]["num_texts"] == n_captions and ret["dataset"]["layout"] == "webdataset"
    assert ret["main_score"] == pytest.approx((ret["metrics"]["image_to_text_recall@1"] + ret["metrics"]["text_to_image_recall@1"]) / 2)
    samples = pd.read_parquet(folder / "captions.samples.parquet")
    assert (samples["query"] == "image").sum() == len(caption_rows) and (samples["query"] == "text").sum() == n_captions
    text = samples[samples["query"] == "text"]
    assert (text["rank"] <= 5).mean() == pytest.approx(ret["metrics"]["text_to_image_recall@5"])

    shown = capsys.readouterr().out
    assert "colours" in shown and "captions" in shown and f"{100 * cls['metrics']['acc1']:.2f}" in shown


def test_rerun_reuses_result_unless_overwrite(tiny_vtde, cards, tmp_path, capsys):
    out = tmp_path / "results"
    args = ("--model", str(tiny_vtde), "--tasks", str(cards[0]), "--output-dir", str(out))
    assert run(*args) == 0
    (path,) = out.glob("*/colours.json")
    first = path.read_text()
    capsys.readouterr()
    assert run(*args) == 0
    assert "reusing" in capsys.readouterr().err
    assert path.read_text() == first
    assert run(*args, "--overwrite") == 0
    assert "reusing" not in capsys.readouterr().err  # evaluated again, not reused
    redone = json.loads(path.read_text())
    assert redone["metrics"] == json.loads(first)["metrics"]
    assert redone["run"]["timings"] != json.loads(first)["run"]["timings"]  # a new run's own timings were written


def test_limit_takes_first_rows_and_is_recorded(tiny_vtde, cards, tmp_path, caption_rows):
    out = tmp_path / "results"
    assert run("--model", str(tiny_vtde), "--tasks", str(cards[1]), "--output-dir", str(out), "--limit", "4") == 0
    (path,) = out.glob("*/captions.json")
    result = json.loads(path.read_text())
    assert result["run"]["limit"] == 4 and result["run"]["limited"] is True
    assert result["dataset"]["num_images"] == 4
    assert result["dataset"]["num_texts"] == sum(len(c) for _, c in caption_rows[:4])


def test_two_runs_give_identical_metrics(tiny_clip, cards, tmp_path):
    """fp32 on the CPU is deterministic: two runs, same numbers to the last bit."""
    for name in ("a", "b"):
        assert run("--model", str(tiny_clip), "--tasks", *map(str, cards), "--output-dir", str(tmp_path / name), "--no-cache") == 0
    for task in ("colours", "captions"):
        (a,) = (tmp_path / "a").glob(f"*/{task}.json")
        (b,) = (tmp_path / "b").glob(f"*/{task}.json")
        assert json.loads(a.read_text())["metrics"] == json.loads(b.read_text())["metrics"]


def test_workers_give_the_same_result_as_inline(tiny_vtde, cards, tmp_path):
    for workers in ("0", "2"):
        assert main(["run", "--workers", workers, "--batch-size", "5", "--model", str(tiny_vtde), "--tasks", str(cards[0]),
                     "--output-dir", str(tmp_path / workers), "--no-cache"]) == 0
    a = pd.read_parquet(next((tmp_path / "0").glob("*/colours.samples.parquet")))
    b = pd.read_parquet(next((tmp_path / "2").glob("*/colours.samples.parquet")))
    pd.testing.assert_frame_equal(a, b)


def test_data_dir_reads_local_copy(tiny_vtde, tmp_path, colour_rows):
    """`--data-dir DIR` makes task T read DIR/T/, here an imagefolder copy of a hub-sourced card."""
    card = helpers.write_card(tmp_path / "cards" / "colours.toml", name="colours", kind="zeroshot_classification",
                              source={"hub": "someone/colours", "revision": "0" * 40, "split": "test", "num_samples": len(colour_rows)},
                              classnames=COLOUR_NAMES)
    helpers.write_imagefolder(tmp_path / "local" / "colours", "test", colour_rows, classnames=COLOUR_NAMES)
    out = tmp_path / "results"
    assert run("--model", str(tiny_vtde), "--tasks", str(card), "--data-dir", str(tmp_path / "local"), "--output-dir", str(out)) == 0
    result = json.loads(next(out.glob("*/colours.json")).read_text())
    assert result["dataset"]["layout"] == "imagefolder" and result["dataset"]["hub"] == "someone/colours"


def test_corrupt_image_stops_with_its_key_or_is_skipped(tiny_vtde, tmp_path, colour_rows, capsys):
    rows = list(colour_rows)
    rows[3] = (b"\x89PNG\r\n\x1a\n broken", rows[3][1])
    helpers.write_parquet(tmp_path / "data", "test", rows, kind="zeroshot_classification", classnames=COLOUR_NAMES)
    card = helpers.write_card(tmp_path / "bad.toml", name="bad", kind="zeroshot_classification",
                              source={"path": "data", "split": "test", "num_samples": len(rows)}, classnames=COLOUR_NAMES)
    out = tmp_path / "results"
    assert run("--model", str(tiny_vtde), "--tasks", str(card), "--output-dir", str(out)) == 2
    err = capsys.readouterr().err
    assert "'3'" in err and "--skip-bad-images" in err and "Traceback" not in err
    assert not list(out.glob("*/*")) if out.exists() else True
    assert run("--model", str(tiny_vtde), "--tasks", str(card), "--output-dir", str(out), "--skip-bad-images") == 0
    result = json.loads(next(out.glob("*/bad.json")).read_text())
    assert result["dataset"]["num_bad_images"] == 1 and result["dataset"]["bad_image_keys"] == ["3"]
    assert result["dataset"]["num_images"] == len(rows) - 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--model", "/nonexistent/model", "--tasks", "CARD"], "no such folder"),
        (["run", "--model", "MODEL", "--tasks", "x.toml"], "x.toml does not exist"),
        (["run", "--model", "MODEL", "--tasks", "no-such-task"], "unknown task 'no-such-task'"),
        (["run", "--model", "MODEL", "--tasks", "CARD", "--batch-size", "0"], "--batch-size"),
        (["run", "--tasks", "CARD"], "--model"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_user_errors_exit_2_with_one_line(args, message, tiny_vtde, cards, tmp_path, capsys):
    args = [str(tiny_vtde) if a == "MODEL" else str(cards[0]) if a == "CARD" else a for a in args]
    assert main([*args, *(["--output-dir", str(tmp_path / "r")] if args[0] == "run" and "--model" in args else [])]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_runtime_failure_exits_3(tiny_vtde, cards, tmp_path, capsys):
    """NaN embeddings are a runtime failure (3), with a hint to use fp32."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny_vtde, broken)
    weights = load_file(broken / "model.safetensors")
    weights["visual_projection.weight"] = torch.full_like(weights["visual_projection.weight"], float("nan"))
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    assert run("--model", str(broken), "--tasks", str(cards[0]), "--output-dir", str(tmp_path / "r")) == 3
    assert "fp32" in capsys.readouterr().err


def test_debug_shows_traceback(tmp_path):
    from vtde_bench.errors import UserError

    with pytest.raises(UserError):
        main(["--debug", "run", "--model", str(tmp_path / "missing"), "--tasks", "x.toml"])


def test_python_dash_m_entry_point():
    done = subprocess.run([sys.executable, "-m", "vtde_bench", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and "vtde-bench" in done.stdout


def test_progress_notes_and_bars_print_brackets_as_text():
    """A path or message with brackets (`[source]`, `data[1]`) is text to show, not rich markup to apply."""
    import io as _io

    from rich.console import Console

    from vtde_bench.render.console import RichProgress

    buffer = _io.StringIO()
    progress = RichProgress(Console(file=buffer, force_terminal=False, width=200))
    progress.note("t: skipped bad image 'a[source]/b.png' ([bold]not bold[/bold])")
    with progress.bar("Loading data for t[1]", total=1) as bar:
        bar.advance()
    assert "'a[source]/b.png' ([bold]not bold[/bold])" in buffer.getvalue()
