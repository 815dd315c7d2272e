"""The Python API is the CLI's one code path: same files for the same run, a table, a DataFrame."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from vtde_bench import RunOptions, UserError, evaluate
from vtde_bench.cli import main

TASKS = ("colours", "captions")


@pytest.fixture(scope="module")
def cli_run(tiny_vtde, cards, tmp_path_factory):
    """`vtde-bench run` on both cards, with its own empty embedding cache: (output folder, stdout)."""
    root = tmp_path_factory.mktemp("cli")
    capture = Console(record=True, width=160)
    import vtde_bench.render.console as report

    printer, report.out = report.out, capture
    try:
        assert main(["run", "--workers", "0", "--model", str(tiny_vtde), "--tasks", *cards,
                     "--output-dir", str(root / "out"), "--cache-dir", str(root / "cache")]) == 0
    finally:
        report.out = printer
    return root / "out", capture.export_text()


def comparable(json_path: Path) -> dict:
    """A result JSON without what differs between two runs of the same thing: the date and the timings."""
    data = json.loads(json_path.read_text())
    del data["run"]["date"], data["run"]["timings"]
    return data


def api_run(form: str, tiny_vtde: Path, cards: list[str], out: Path, cache: Path):
    if form == "path, keyword options":
        return evaluate(str(tiny_vtde), tasks=cards, workers=0, output_dir=out, cache_dir=cache)
    if form == "loaded model, RunOptions":
        from transformers import VisionTextDualEncoderModel, VisionTextDualEncoderProcessor

        model = VisionTextDualEncoderModel.from_pretrained(str(tiny_vtde))
        processor = VisionTextDualEncoderProcessor.from_pretrained(str(tiny_vtde))
        return evaluate(model, cards, processor=processor, options=RunOptions(workers=0, output_dir=out, cache_dir=cache))
    results = evaluate(str(tiny_vtde), cards, options=RunOptions(workers=0, output_dir=None, cache_dir=cache))
    assert results.paths == {}
    results.write(out)  # "in memory, then Results.write"
    return results


@pytest.mark.parametrize("form", ["path, keyword options", "loaded model, RunOptions", "in memory, then Results.write"])
def test_api_writes_the_same_files_as_the_cli(form, tiny_vtde, cards, cli_run, tmp_path):
    cli_out, _ = cli_run
    results = api_run(form, tiny_vtde, cards, tmp_path / "out", tmp_path / "cache")
    (cli_folder,) = cli_out.iterdir()
    (api_folder,) = (tmp_path / "out").iterdir()
    assert api_folder.name == cli_folder.name
    assert sorted(p.name for p in api_folder.iterdir()) == sorted(p.name for p in cli_folder.iterdir())
    for task in TASKS:
        assert comparable(api_folder / f"{task}.json") == comparable(cli_folder / f"{task}.json")
        pd.testing.assert_frame_equal(pd.read_parquet(api_folder / f"{task}.samples.parquet"),
                                      pd.read_parquet(cli_folder / f"{task}.samples.parquet"))
        assert results[task].metrics == json.loads((cli_folder / f"{task}.json").read_text())["metrics"]


def test_results_render_as_the_cli_table_and_convert_to_a_dataframe(tiny_vtde, cards, cli_run, tmp_path):
    _, cli_text = cli_run
    results = evaluate(str(tiny_vtde), cards, workers=0, output_dir=None, cache=False)
    console = Console(record=True, width=160)
    console.print(results)  # what rich.print(results) shows in a terminal or notebook
    shown = console.export_text()
    # Same titles, columns and scores as the CLI's table; only the img/s and time cells differ.

    def without_timings(text: str) -> list[str]:
        return ["│".join(line.split("│")[:-3]) if line.startswith("│") else line for line in text.splitlines()]

    assert without_timings(shown) == without_timings(cli_text)[: len(shown.splitlines())]
    assert "colours" in shown and f"{100 * results['colours'].metrics['acc1']:.2f}" in shown

    frame = results.to_dataframe()
    from vtde_bench.results import COLUMNS, load_results

    # One frame: the same columns as load_results over the written files, and the same values.
    assert list(frame.columns) == COLUMNS
    read = load_results(cli_run[0])
    key = ["model", "task", "metric"]
    assert frame[key + ["value", "main"]].sort_values(key).reset_index(drop=True).equals(
        read[key + ["value", "main"]].sort_values(key).reset_index(drop=True))
    assert len(frame) == sum(len(r.metrics) for r in results)
    main_rows = frame[frame["main"]].set_index("task")["value"]
    assert main_rows.to_dict() == {r.task_name: r.main_score for r in results}


def test_unknown_keyword_option_is_a_user_error(tiny_vtde, cards):
    with pytest.raises(UserError, match="did you mean 'batch_size'"):
        evaluate(str(tiny_vtde), cards, batchsize=8)
    with pytest.raises(UserError, match="--batch-size must be at least 1"):
        evaluate(str(tiny_vtde), cards, batch_size=0)


def test_keyword_options_override_run_options(tiny_vtde, cards):
    results = evaluate(str(tiny_vtde), cards[:1], options=RunOptions(output_dir=None, limit=5), limit=3, workers=0, cache=False)
    assert results["colours"].run.limit == 3 and results["colours"].dataset.num_images == 3


def test_evaluate_under_torchrun_needs_init_distributed(tiny_vtde, cards, monkeypatch):
    """Issue #16: the library no longer joins torchrun's group as a side effect; the CLI does, and API users call
    vtde_bench.init_distributed(). Forgetting it would have every rank do all the work alone: refused, naming it."""
    import vtde_bench

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match=r"vtde_bench\.init_distributed\(\)"):
        evaluate(str(tiny_vtde), cards[:1], workers=0, output_dir=None)
    assert callable(vtde_bench.init_distributed)
