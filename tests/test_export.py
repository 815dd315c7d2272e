"""Results where people publish them, and others' results beside ours: `vtde-bench export` to a model card's
model-index (read back with huggingface_hub's own readers, merged into an existing card without clobbering it)
and to open_clip's results CSV (read back with pandas and with our importer); open_clip's published CSVs and
DataComp's eval_results.jsonl imported into the leaderboard, labelled and never ranked."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest
import yaml

import helpers
from vtde_bench.analysis import leaderboard
from vtde_bench.cli import main
from vtde_bench.results import load_rows
from vtde_bench.tasks import groups, load_tasks

DATACOMP = groups()["datacomp"]
# open_clip's docs/openclip_results.csv and docs/openclip_retrieval_results.csv: headers and the ViT-B-32/openai rows, verbatim.
RESULTS_HEADER = ("name,pretrained,params (M),FLOPs (B),Average perf. on 38 datasets,ImageNet 1k,Caltech-101,CIFAR-10,CIFAR-100,"
                  "CLEVR Counts,CLEVR Distance,Country211,Describable Textures,EuroSAT,FGVC Aircraft,Food-101,GTSRB,ImageNet Sketch,"
                  "ImageNet v2,ImageNet-A,ImageNet-O,ImageNet-R,KITTI Vehicle Distance,MNIST,ObjectNet,Oxford Flowers-102,"
                  "Oxford-IIIT Pet,Pascal VOC 2007,PatchCamelyon,Rendered SST2,RESISC45,Stanford Cars,STL-10,SUN397,SVHN,Flickr,"
                  "MSCOCO,WinoGAViL,iWildCam,Camelyon17,FMoW,Dollar Street,GeoDE")
RESULTS_ROW = ("ViT-B-32,openai,151.28,14.78,0.5245,0.6332,0.8758,0.8983,0.6423,0.2320,0.2335,0.1720,0.4436,0.5044,0.1953,"
               "0.8400,0.3258,0.4229,0.5592,0.3155,0.4775,0.6933,0.2743,0.4839,0.4431,0.6670,0.8700,0.7640,0.6224,0.5865,0.5362,"
               "0.5963,0.9713,0.6248,0.3159,0.6884,0.4028,0.4125,0.0732,0.6061,0.1676,0.5386,0.8217")
RETRIEVAL_HEADER = ("name,pretrained,params (M),FLOPs (B),Average score,Flickr image retr. R@1,Flickr image retr. R@5,"
                    "Flickr image retr. R@10,Flickr text retr. R@1,Flickr text retr. R@5,Flickr text retr. R@10,MSCOCO image retr. R@1,"
                    "MSCOCO image retr. R@5,MSCOCO image retr. R@10,MSCOCO text retr. R@1,MSCOCO text retr. R@5,MSCOCO text retr. R@10,"
                    "WinoGAViL avg jaccard score,WinoGAViL jaccard score 10,WinoGAViL jaccard score 10-12,WinoGAViL jaccard score 12,"
                    "WinoGAViL jaccard score 5,WinoGAViL jaccard score 5-6,WinoGAViL jaccard score 6")
RETRIEVAL_ROW = ("ViT-B-32,openai,151.28,14.78,0.6321,0.5878,0.8356,0.9002,0.7890,0.9490,0.9820,0.3044,0.5594,0.6687,0.5012,"
                 "0.7500,0.8352,0.5054,0.4454,0.4125,0.3798,0.5492,0.5347,0.5210")


def datacomp_results(out: Path, slug: str = "mine", seed: int = 0, skip: tuple[str, ...] = (), hub: bool = False) -> dict[str, float]:
    """A result per DataComp task with seeded values, each task's every metric; returns each task's main score."""
    rng = random.Random(seed)
    scores = {}
    for task in DATACOMP.tasks:
        if task in skip:
            continue
        (spec,) = load_tasks(task)
        value = round(rng.random(), 6)
        scores[task] = value
        path = helpers.write_result(out, slug=slug, task=task, kind=spec.type, main_metric=spec.main_metric, version=spec.version,
                                    metrics={m: value for m in spec.metrics},
                                    num_classes=getattr(spec, "num_classes", 10))
        if hub:  # as a run of the card on its hub source writes it
            data = json.loads(path.read_text())
            data["dataset"].update(hub=spec.source.hub, revision=spec.source.revision, split=spec.source.split)
            path.write_text(json.dumps(data))
    return scores


def test_openclip_csv_export_has_open_clips_columns_and_round_trips(tmp_path, capsys):
    scores = datacomp_results(tmp_path / "results")
    assert main(["export", str(tmp_path / "results"), "--format", "openclip-csv", "--to", str(tmp_path / "out")]) == 0
    csv = tmp_path / "out" / "openclip_results.csv"
    frame = pd.read_csv(csv)
    assert ",".join(frame.columns) == RESULTS_HEADER
    (row,) = frame.to_dict("records")
    for task, column in DATACOMP.columns.items():
        assert row[column] == scores[task]  # exactly: fractions as the results hold them
    assert row["Average perf. on 38 datasets"] == pytest.approx(sum(scores.values()) / 38, abs=1e-15)
    (imported,) = [r for r in leaderboard.build(load_rows(csv), group=DATACOMP).rows]
    assert imported.scores == pytest.approx(scores, abs=0) and imported.rank is None  # an imported row: never ranked


def test_a_model_missing_a_task_has_no_average_and_limited_runs_are_refused(tmp_path, capsys):
    datacomp_results(tmp_path / "results", skip=("fmow",))
    assert main(["export", str(tmp_path / "results"), "--format", "openclip-csv", "--to", str(tmp_path / "out")]) == 0
    (row,) = pd.read_csv(tmp_path / "out" / "openclip_results.csv").to_dict("records")
    assert row["Average perf. on 38 datasets"] != row["Average perf. on 38 datasets"] and row["FMoW"] != row["FMoW"]  # NaN: empty
    helpers.write_result(tmp_path / "limited", slug="quick", task="cifar10", limit=100, metrics={"acc1": 0.5})
    assert main(["export", str(tmp_path / "limited"), "--format", "openclip-csv", "--to", str(tmp_path / "o2")]) == 2
    assert "is a --limit run" in capsys.readouterr().err and not (tmp_path / "o2").exists()


def test_open_clips_published_csvs_import_as_labelled_rows(tmp_path):
    (tmp_path / "openclip_results.csv").write_text(RESULTS_HEADER + "\n" + RESULTS_ROW + "\n")
    (tmp_path / "openclip_retrieval_results.csv").write_text(RETRIEVAL_HEADER + "\n" + RETRIEVAL_ROW + "\n")
    rows = load_rows(tmp_path)
    assert {r.source for r in rows} == {"openclip_csv"} and {r.model_name for r in rows} == {"ViT-B-32 / openai (open_clip CSV)"}
    by = {}
    for r in rows:
        by.setdefault(r.task_name, {}).update(r.metrics)
    assert by["fmow"]["acc_worst_region"] == 0.1676 and by["caltech101"]["mean_per_class_recall"] == 0.8758
    assert by["flickr30k"]["text_to_image_recall@1"] == 0.5878 and by["flickr30k"]["image_to_text_recall@1"] == 0.789
    assert by["flickr30k"]["mean_recall@1"] == pytest.approx(0.6884, abs=1e-12)  # both CSVs: the same number
    assert by["winogavil"]["jaccard_score_10-12"] == 0.4125 and by["winogavil"]["avg_jaccard_score"] == 0.5054
    board = leaderboard.build([r for r in rows if r.path.name == "openclip_results.csv"], group=DATACOMP)
    (row,) = board.rows
    assert row.average == pytest.approx(0.5245, abs=1e-4) and row.rank is None


def test_datacomps_eval_results_jsonl_imports_with_its_folder_as_the_model(tmp_path):
    folder = tmp_path / "my-datacomp-run"
    folder.mkdir()
    lines = [
        {"key": "imagenet1k", "dataset": "ImageNet 1k", "metrics": {"acc1": 0.6332, "acc5": 0.8886, "mean_per_class_recall": 0.6331,
                                                                     "main_metric": 0.6332}},
        {"key": "retrieval/flickr_1k_test_image_text_retrieval", "dataset": "Flickr",
         "metrics": {"image_retrieval_recall@1": 0.5878, "text_retrieval_recall@1": 0.789, "image_retrieval_recall@5": 0.8356,
                     "text_retrieval_recall@5": 0.949, "image_retrieval_recall@10": 0.9002, "text_retrieval_recall@10": 0.982,
                     "mean_recall@1": 0.6884, "main_metric": 0.6884}},
        {"key": "wilds/fmow", "dataset": "FMoW", "metrics": {"acc1": 0.2, "acc_worst_region": 0.1676, "main_metric": 0.1676}},
        {"key": "fairness/fairface", "dataset": "FairFace", "metrics": {"main_metric": None}},  # no card here: skipped
    ]
    (folder / "eval_results.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    rows = {r.task_name: r for r in load_rows(folder / "eval_results.jsonl")}
    assert set(rows) == {"imagenet1k", "flickr30k", "fmow"}
    assert rows["flickr30k"].metrics["text_to_image_recall@1"] == 0.5878 and rows["flickr30k"].main_metric == "mean_recall@1"
    assert rows["fmow"].main_metric == "acc_worst_region" and rows["imagenet1k"].source == "datacomp_jsonl"
    assert rows["fmow"].model_name == "my-datacomp-run (DataComp eval_results.jsonl)"


def test_model_index_round_trips_through_huggingface_hubs_readers(tmp_path):
    from huggingface_hub.repocard_data import model_index_to_eval_results

    scores = datacomp_results(tmp_path / "results", hub=True)
    assert main(["export", str(tmp_path / "results"), "--format", "model-index", "--to", str(tmp_path / "out")]) == 0
    block = yaml.safe_load((tmp_path / "out" / "mine" / "model-index.yaml").read_text())
    name, results = model_index_to_eval_results(block["model-index"])
    assert name == "mine"
    mains = {(r.dataset_name, r.metric_type): r for r in results if r.metric_name.endswith("(main)")}
    assert len(mains) == 38
    for task, value in scores.items():
        (spec,) = load_tasks(task)
        r = mains[(task, spec.main_metric)]
        assert r.metric_value == value and r.dataset_type == spec.source.hub and r.dataset_revision == spec.source.revision
        assert r.source_name == "vtde-bench"
    assert {r.task_type for r in results} == {"zero-shot-image-classification", "other"}


def test_model_index_merges_into_a_card_without_clobbering_it(tmp_path, capsys):
    from huggingface_hub import ModelCard

    datacomp_results(tmp_path / "results", hub=True, skip=tuple(t for t in DATACOMP.tasks if t != "cifar10"))
    card = tmp_path / "README.md"
    card.write_text("---\nlicense: mit\nmodel-index:\n- name: mine\n  results:\n  - task:\n      type: image-classification\n"
                    "    dataset:\n      type: other/set\n      name: Other set\n    metrics:\n    - type: accuracy\n"
                    "      value: 0.5\n    source:\n      name: another tool\n      url: https://example.org\n---\n# My model\n\nProse.\n")
    assert main(["export", str(tmp_path / "results"), "--format", "model-index", "--to", str(tmp_path / "out"), "--card", str(card)]) == 0
    merged = ModelCard.load(tmp_path / "out" / "mine" / "README.md")
    sources = sorted({r.source_name for r in merged.data.eval_results})
    assert sources == ["another tool", "vtde-bench"] and merged.data.license == "mit" and "Prose." in merged.text
    # Exporting again into the merged card replaces vtde-bench's own entries, and keeps the other tool's.
    assert main(["export", str(tmp_path / "results"), "--format", "model-index", "--to", str(tmp_path / "again"),
                 "--card", str(tmp_path / "out" / "mine" / "README.md")]) == 0
    again = ModelCard.load(tmp_path / "again" / "mine" / "README.md")
    assert len(again.data.eval_results) == len(merged.data.eval_results)


def test_model_index_needs_hub_datasets(tmp_path, capsys):
    helpers.write_result(tmp_path / "results", slug="local", task="shapes-classification", metrics={"acc1": 0.5})
    assert main(["export", str(tmp_path / "results"), "--format", "model-index", "--to", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "not a hub dataset" in err and len(err.strip().splitlines()) == 1
