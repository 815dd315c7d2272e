"""`vtde-bench leaderboard` and `load_results`: real tiny-model runs plus synthetic results, every format."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import helpers
from helpers import COLOUR_NAMES
from helpers import write_result
from vtde_bench.analysis import leaderboard
from vtde_bench.render import leaderboard as formats
from vtde_bench.cli import main
from vtde_bench.results import load_results, load_rows, read_task_results


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_vtde, tiny_clip, colour_rows, caption_rows):
    """Two models run in full on a classification and a retrieval task, one of them also with --limit."""
    root = tmp_path_factory.mktemp("leaderboard")
    cls, ret = helpers.write_colour_cards(root, colour_rows, caption_rows, COLOUR_NAMES)
    common = ["run", "--workers", "0", "--bootstrap", "200", "--tasks", str(cls), str(ret)]
    for model in (tiny_vtde, tiny_clip):
        assert main([*common, "--model", str(model), "--output-dir", str(root / "results")]) == 0
    assert main([*common[:-1], "--model", str(tiny_clip), "--output-dir", str(root / "limited"), "--limit", "4"]) == 0
    results = {p.parent.name + "/" + p.stem: json.loads(p.read_text()) for p in (root / "results").glob("*/*.json")}
    return root, results


def board_json(*args: str, capsys) -> dict:
    capsys.readouterr()
    assert main(["leaderboard", *args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_load_results_frame(runs):
    root, results = runs
    frame = load_results([root / "results", root / "limited"])
    assert {"model", "model_path", "task", "task_type", "task_version", "metric", "value", "low", "high", "main", "limited",
            "dataset_fingerprint", "weights_fingerprint", "source"} <= set(frame.columns)
    # 2 full models × (3 classification + 7 retrieval metrics) + the limited colours run's metrics
    assert len(frame) == 2 * (3 + 7) + 3
    assert frame["value"].between(0, 1).all() and (frame["source"] == "vtde-bench").all()
    assert ((frame["low"] <= frame["value"] + 1e-12) & (frame["value"] <= frame["high"] + 1e-12)).all()
    assert frame.groupby(["model", "task", "limited"])["main"].sum().eq(1).all()
    assert frame["limited"].sum() == 3
    one = results[next(k for k in results if k.endswith("/colours"))]
    row = frame[(frame["model"] == one["model"]["slug"]) & (frame["task"] == "colours") & (frame["metric"] == "acc1") & ~frame["limited"]]
    assert row["value"].item() == one["metrics"]["acc1"] and row["task_type"].item() == "zeroshot_classification"
    assert row["dataset_fingerprint"].item() == one["dataset"]["fingerprint"]
    results_read = read_task_results(root / "results")
    assert len(results_read) == 4 and {r.task_name for r in results_read} == {"colours", "captions"}


def test_load_results_is_the_public_api(runs):
    import vtde_bench

    frame = vtde_bench.load_results(runs[0] / "results", published=True)
    assert set(frame["source"]) == {"vtde-bench", "published"}
    published = frame[frame["source"] == "published"]
    assert published["low"].isna().all() and published["model"].str.contains("published").all()


def test_json_fractions_ranks_and_flags(runs, capsys):
    root, results = runs
    data = board_json(str(root / "results"), str(root / "limited"), "--no-published", capsys=capsys)
    assert data["units"] == "fractions"
    assert [t["name"] for t in data["tasks"]] == ["colours", "captions"]
    ranked = [r for r in data["rows"] if r["section"] == "main"]
    flagged = [r for r in data["rows"] if r["section"] == "flagged"]
    assert sorted(r["rank"] for r in ranked) == [1, 2] and len(flagged) == 1
    assert flagged[0]["rank"] is None and flagged[0]["flags"] == ["colours: --limit 4"]
    assert [r["average"] for r in ranked] == sorted((r["average"] for r in ranked), reverse=True)
    for row in ranked:
        colours = results[f"{row['model']}/colours"]
        assert row["scores"]["colours"] == colours["metrics"]["acc1"]
        assert row["intervals"]["colours"] == colours["intervals"]["acc1"]
        assert row["average"] == pytest.approx((row["scores"]["colours"] + row["scores"]["captions"]) / 2)
        assert row["averages"] == {"zeroshot_classification": row["scores"]["colours"], "retrieval": row["scores"]["captions"]}


def test_table_shows_percent_and_flagged_section(runs, capsys):
    root, results = runs
    assert main(["leaderboard", str(root / "results"), str(root / "limited"), "--no-published"]) == 0
    shown = capsys.readouterr().out
    for key, result in results.items():
        assert f"{100 * result['main_score']:.2f}" in shown
    assert "flagged, not ranked" in shown and "--limit 4" in shown


def test_markdown_and_csv(runs, tmp_path):
    root, results = runs
    md, csv = tmp_path / "board.md", tmp_path / "board.csv"
    for fmt, path in (("markdown", md), ("csv", csv)):
        assert main(["leaderboard", str(root / "results"), str(root / "limited"), "--no-published", "--format", fmt, "--output", str(path)]) == 0
    text = md.read_text()
    assert text.count("| 1 |") == 1 and "| 2 |" in text and "### Flagged, not ranked" in text and "colours: --limit 4" in text
    assert all(f"{100 * r['main_score']:.2f}" in text for r in results.values())
    frame = pd.read_csv(csv)
    assert list(frame.columns[:5]) == ["section", "rank", "model", "source", "model_path"]
    assert {"colours", "captions", "classification avg", "retrieval avg", "average", "flags"} <= set(frame.columns)
    assert frame[["colours", "captions", "average"]].stack().dropna().between(0, 1).all()  # fractions, not percent
    ranked = frame[frame["section"] == "main"]
    for _, row in ranked.iterrows():
        assert row["colours"] == pytest.approx(results[f"{row['model']}/colours"]["metrics"]["acc1"])
    assert frame.loc[frame["section"] == "flagged", "rank"].isna().all()


def test_html_is_self_contained_with_a_chart_per_task(runs, tmp_path, capsys):
    root, results = runs
    out = tmp_path / "board.html"
    assert main(["leaderboard", str(root / "results"), str(root / "limited"), "--format", "html", "--output", str(out)]) == 0
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "http" not in html and "<script" not in html and "<link" not in html and "@import" not in html
    assert html.count("<svg") == 2 and html.count("</svg>") == 2  # one chart per task
    assert "Flagged, not ranked" in html
    assert all(f"{100 * r['main_score']:.2f}" in html for r in results.values())
    assert "95% interval" in html  # whiskers
    import xml.etree.ElementTree as ET

    for svg in html.split("<svg")[1:]:
        ET.fromstring("<svg" + svg.split("</svg>")[0] + "</svg>")  # each chart is well-formed


def test_published_rows_are_labelled_sorted_and_unranked(tmp_path, capsys):
    """Synthetic cifar10 results: published rows sit between them by score, with no rank, cut to our tasks."""
    write_result(tmp_path / "r", slug="strong", task="cifar10", metrics={"acc1": 0.995, "acc5": 0.999, "mean_per_class_recall": 0.95},
                 intervals={"acc1": [0.985, 1.0], "acc5": [0.98, 1.0], "mean_per_class_recall": [0.94, 0.96]})
    write_result(tmp_path / "r", slug="weak", task="cifar10", metrics={"acc1": 0.5, "acc5": 0.9, "mean_per_class_recall": 0.5})
    data = board_json(str(tmp_path / "r"), capsys=capsys)
    assert [t["name"] for t in data["tasks"]] == ["cifar10"]  # published flickr30k etc. add no columns
    rows = data["rows"]
    assert [r["model"] for r in rows][0] == "strong" and rows[-1]["model"] == "weak"
    assert rows[0]["rank"] == 1 and rows[-1]["rank"] == 2
    published = rows[1:-1]
    assert len(published) == 7 and all(r["source"] == "published" and r["rank"] is None for r in published)
    assert all("published" in r["model"] for r in published)
    assert [r["scores"]["cifar10"] for r in published] == sorted((r["scores"]["cifar10"] for r in published), reverse=True)
    assert all(r["intervals"] == {} for r in published)  # fields they lack stay empty
    capsys.readouterr()
    assert main(["leaderboard", str(tmp_path / "r"), "--format", "markdown"]) == 0
    text = capsys.readouterr().out
    assert "| 1 | strong | vtde-bench | 99.50 ±0.8 |" in text and "|  | ViT-B-32 / openai (open_clip, published) | published | 89.83 |" in text


def test_different_dataset_or_task_version_is_flagged(tmp_path, capsys):
    metrics = {"acc1": 0.6, "acc5": 0.9, "mean_per_class_recall": 0.6}
    for slug in ("a", "b", "c"):
        write_result(tmp_path, slug=slug, task="t", metrics=metrics)
    write_result(tmp_path, slug="other-data", task="t", metrics={**metrics, "acc1": 0.99}, fingerprint="e" * 64)
    write_result(tmp_path, slug="v2", task="t", metrics=metrics, version=2)
    data = board_json(str(tmp_path), "--no-published", capsys=capsys)
    flagged = {r["model"]: r["flags"] for r in data["rows"] if r["section"] == "flagged"}
    assert flagged == {"other-data": ["t: dataset eeeeeeee (others: dddddddd)"], "v2": ["t: task version 2 (others: 1)"]}
    assert sorted(r["rank"] for r in data["rows"] if r["section"] == "main") == [1, 1, 1]  # ties share a rank


def test_build_rows_split_a_model_across_sections(tmp_path):
    """A model with a full run of one task and a limited run of another gets a ranked row and a flagged row."""
    metrics = {"acc1": 0.5, "acc5": 0.9, "mean_per_class_recall": 0.5}
    write_result(tmp_path, slug="m", task="full", metrics=metrics)
    write_result(tmp_path, slug="m", task="quick", metrics=metrics, limit=10, fingerprint="f" * 64)
    board = leaderboard.build(load_rows(tmp_path))
    assert [(r.model, r.rank, sorted(r.scores)) for r in board.rows] == [("m", 1, ["full"]), ("m", None, ["quick"])]
    assert board.rows[1].flags == ["quick: --limit 10"]


def test_clip_benchmark_results_are_imported_and_labelled(tmp_path, capsys):
    """CLIP_benchmark's cli.py JSON: image_retrieval_recall@k is text→image, text_retrieval_recall@k image→text."""
    folder = tmp_path / "clip_benchmark"
    folder.mkdir()
    (folder / "cifar10.json").write_text(
        '{"dataset": "wds/vtab/cifar10", "model": "ViT-B-32", "pretrained": "openai", "task": "zeroshot_classification", '
        '"metrics": {"acc1": 0.8983, "acc5": NaN, "mean_per_class_recall": 0.898}, "language": "en"}')
    (folder / "coco.json").write_text(json.dumps(
        {"dataset": "mscoco_captions", "model": "ViT-B-32", "pretrained": "openai", "task": "zeroshot_retrieval",
         "metrics": {"image_retrieval_recall@1": 0.3, "text_retrieval_recall@1": 0.5, "image_retrieval_recall@5": 0.55,
                     "text_retrieval_recall@5": 0.75}, "language": "en"}))
    (folder / "notes.json").write_text('{"not": "a result"}')  # other JSON in a folder is skipped
    frame = load_results(folder)
    assert set(frame["source"]) == {"clip_benchmark"} and set(frame["task"]) == {"cifar10", "mscoco"}
    coco = frame[frame["task"] == "mscoco"].set_index("metric")["value"]
    assert coco["text_to_image_recall@1"] == 0.3 and coco["image_to_text_recall@1"] == 0.5
    assert coco["mean_recall@1"] == pytest.approx(0.4)
    assert "acc5" not in set(frame.loc[frame["task"] == "cifar10", "metric"])  # NaN dropped
    assert frame["model"].str.endswith("(CLIP_benchmark)").all()

    write_result(tmp_path / "ours", slug="mine", task="cifar10", metrics={"acc1": 0.7, "acc5": 0.9, "mean_per_class_recall": 0.7})
    data = board_json(str(tmp_path / "ours"), str(folder), "--no-published", capsys=capsys)
    rows = {r["model"]: r for r in data["rows"]}
    imported = rows["ViT-B-32 / openai (CLIP_benchmark)"]
    assert imported["source"] == "clip_benchmark" and imported["rank"] is None and imported["scores"] == {"cifar10": 0.8983}
    assert rows["mine"]["rank"] == 1 and data["rows"][0]["model"] == imported["model"]  # sorted by score, unranked


@pytest.mark.parametrize("case", ["empty", "missing", "not-a-result", "bad-json"])
def test_bad_input_exits_2(case, tmp_path, capsys):
    target = tmp_path / "x.json"
    if case == "empty":
        target = tmp_path / "empty"
        target.mkdir()
    elif case == "not-a-result":
        target.write_text("[1, 2]")
    elif case == "bad-json":
        target.write_text("{")
    assert main(["leaderboard", str(target)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_frame_renderer_keeps_fractions(tmp_path):
    write_result(tmp_path, slug="m", task="t", metrics={"acc1": 0.25, "acc5": 0.5, "mean_per_class_recall": 0.25})
    frame = formats.to_frame(leaderboard.build(load_rows(tmp_path)))
    assert frame.loc[0, "t"] == 0.25 and frame.loc[0, "average"] == 0.25 and frame.loc[0, "rank"] == 1
    assert "retrieval avg" not in frame and "classification avg" in frame  # only the task types present


def test_table_to_a_file_is_plain_text(tmp_path):
    write_result(tmp_path / "r", slug="m", task="t", metrics={"acc1": 0.25, "acc5": 0.5, "mean_per_class_recall": 0.25})
    out = tmp_path / "board.txt"
    assert main(["leaderboard", str(tmp_path / "r"), "--no-published", "--output", str(out)]) == 0
    text = out.read_text()
    assert "vtde-bench leaderboard (%)" in text and "25.00" in text and "\x1b[" not in text


def test_unwritable_output_file_names_the_option_to_change(tmp_path, capsys):
    """Tests run as root, so a path under a regular file stands in for an unwritable one."""
    write_result(tmp_path / "r", slug="m", task="t", metrics={"acc1": 0.25, "acc5": 0.5, "mean_per_class_recall": 0.25})
    (tmp_path / "a-file").write_text("x")
    capsys.readouterr()
    assert main(["leaderboard", str(tmp_path / "r"), "--no-published", "--output", str(tmp_path / "a-file" / "board.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cannot write" in err and "choose another --output path" in err


def test_written_path_with_brackets_is_printed_whole(tmp_path, capsys):
    write_result(tmp_path / "r", slug="m", task="t", metrics={"acc1": 0.25, "acc5": 0.5, "mean_per_class_recall": 0.25})
    out = tmp_path / "[bold]board[/bold].md"
    assert main(["leaderboard", str(tmp_path / "r"), "--no-published", "--format", "markdown", "--output", str(out)]) == 0
    assert out.is_file() and "[bold]board[/bold].md" in capsys.readouterr().out.replace("\n", "")


def test_rows_missing_a_task_of_the_set_get_no_rank_and_no_average(tmp_path, capsys):
    """Issue #13 item 5: a model that ran one easy task ranked above one that ran it and a hard one, and a
    published row with one task sorted above every model."""
    easy = {"acc1": 0.9, "acc5": 0.99, "mean_per_class_recall": 0.9}
    write_result(tmp_path / "r", slug="easy-only", task="easy", metrics=easy)
    write_result(tmp_path / "r", slug="both", task="easy", metrics={**easy, "acc1": 0.8})
    write_result(tmp_path / "r", slug="both", task="hard", metrics={**easy, "acc1": 0.3})
    (tmp_path / "cb").mkdir()
    (tmp_path / "cb" / "easy.json").write_text(json.dumps(
        {"dataset": "easy", "model": "ViT-X", "pretrained": "p", "task": "zeroshot_classification",
         "metrics": {"acc1": 0.99}, "language": "en"}))
    data = board_json(str(tmp_path / "r"), str(tmp_path / "cb"), "--no-published", capsys=capsys)
    main_rows = [r for r in data["rows"] if r["section"] == "main"]
    assert [(r["model"], r["rank"], r["average"]) for r in main_rows] == [("both", 1, pytest.approx(0.55))]
    flagged = {r["model"]: r for r in data["rows"] if r["section"] == "flagged"}
    assert flagged["easy-only"]["flags"] == ["missing hard"] and flagged["easy-only"]["average"] is None
    assert flagged["ViT-X / p (CLIP_benchmark)"]["flags"] == ["missing hard"] and flagged["easy-only"]["rank"] is None
    capsys.readouterr()
    assert main(["leaderboard", str(tmp_path / "r"), "--no-published", "--format", "markdown"]) == 0
    text = capsys.readouterr().out
    assert "missing hard" in text.split("### Flagged, not ranked")[1]


def test_group_fixes_the_task_set(tmp_path, capsys):
    """--group standard: the five standard tasks are the columns; the published rows have all five, our one-task row
    misses four and is not ranked above them."""
    write_result(tmp_path, slug="mine", task="cifar10", metrics={"acc1": 0.99, "acc5": 1.0, "mean_per_class_recall": 0.99})
    write_result(tmp_path, slug="mine", task="colours", metrics={"acc1": 0.5, "acc5": 1.0, "mean_per_class_recall": 0.5})
    data = board_json(str(tmp_path), "--group", "standard", capsys=capsys)
    assert [t["name"] for t in data["tasks"]] == ["cifar10", "cifar100", "imagenet1k", "flickr30k", "mscoco"]
    rows = {r["model"]: r for r in data["rows"]}
    assert rows["mine"]["section"] == "flagged" and rows["mine"]["flags"] == ["missing cifar100, imagenet1k, flickr30k, mscoco"]
    assert "colours" not in rows["mine"]["scores"]
    published = [r for r in data["rows"] if r["source"] == "published"]
    assert published and all(r["section"] == "main" and r["average"] is not None and r["rank"] is None for r in published)
    capsys.readouterr()
    assert main(["leaderboard", str(tmp_path), "--group", "standrad"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'standard'?" in err and len(err.strip().splitlines()) == 1


def test_a_group_weighs_tasks_by_size_and_may_count_a_missing_task_as_zero(tmp_path):
    """groups.toml's `aggregate = "size-weighted"` (cifar10 has 10,000 images, flickr30k 1,000) and `incomplete = "zero"`."""
    from vtde_bench.tasks import Group

    cls = {"acc1": 0.9, "acc5": 1.0, "mean_per_class_recall": 0.9}
    ret = {name: 0.2 for name in ("image_to_text_recall@1", "image_to_text_recall@5", "image_to_text_recall@10",
                                  "text_to_image_recall@1", "text_to_image_recall@5", "text_to_image_recall@10", "mean_recall@1")}
    write_result(tmp_path, slug="both", task="cifar10", metrics=cls)
    write_result(tmp_path, slug="both", task="flickr30k", metrics=ret, kind="retrieval")
    write_result(tmp_path, slug="one", task="cifar10", metrics={**cls, "acc1": 0.95})
    records = load_rows(tmp_path)
    weighted = leaderboard.build(records, group=Group("g", ("cifar10", "flickr30k"), aggregate="size-weighted"))
    (both,) = [r for r in weighted.rows if r.model == "both"]
    assert both.average == pytest.approx((10_000 * 0.9 + 1_000 * 0.2) / 11_000) and both.rank == 1
    assert [r.model for r in weighted.flagged] == ["one"]  # unranked: it misses flickr30k
    zero = leaderboard.build(records, group=Group("g", ("cifar10", "flickr30k"), incomplete="zero"))
    rows = {r.model: r for r in zero.rows}
    assert rows["one"].average == pytest.approx(0.95 / 2) and rows["one"].rank == 2 and rows["one"].missing == ["flickr30k"]
    assert rows["both"].average == pytest.approx((0.9 + 0.2) / 2) and rows["both"].rank == 1 and not zero.flagged
