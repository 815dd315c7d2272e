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


COMMIT = "0123456789abcdef0123456789abcdef01234567"


def benchmark_result(tmp_path: Path) -> Path:
    """A result of a card that names a registered Hub benchmark (as a user's card would)."""
    (tmp_path / "names.txt").write_text("cat\ndog\n")
    (tmp_path / "templates.txt").write_text("a photo of a {c}.\n")
    card = tmp_path / "bench.toml"
    card.write_text(f'name = "bench"\ntype = "zeroshot_classification"\nversion = 1\nhub_benchmark = "org/bench"\n'
                    f'hub_benchmark_task = "zeroshot_test"\n[source]\nhub = "org/bench"\nrevision = "{COMMIT}"\nsplit = "test"\n'
                    'num_samples = 10\n[prompts]\nclassnames = "names.txt"\ntemplates = "templates.txt"\n')
    path = helpers.write_result(tmp_path / "results", slug="mine", task="bench", metrics={"acc1": 0.7, "mean_per_class_recall": 0.65})
    data = json.loads(path.read_text())
    data["task"]["card"] = str(card)
    data["dataset"].update(hub="org/bench", revision=COMMIT)
    path.write_text(json.dumps(data))
    helpers.write_result(tmp_path / "results", slug="mine", task="cifar10", metrics={"acc1": 0.9})  # a card naming none
    return tmp_path / "results"


def test_eval_results_are_written_for_hub_benchmarks_only(tmp_path, capsys):
    from huggingface_hub import parse_eval_result_entries

    results = benchmark_result(tmp_path)
    assert main(["export", str(results), "--format", "eval-results", "--to", str(tmp_path / "out")]) == 0
    written = sorted(p.name for p in (tmp_path / "out" / "mine" / ".eval_results").iterdir())
    assert written == ["bench.yaml"]
    assert "cifar10: its card names no Hub benchmark" in capsys.readouterr().err
    (entry,) = parse_eval_result_entries(yaml.safe_load((tmp_path / "out" / "mine" / ".eval_results" / "bench.yaml").read_text()))
    assert (entry.dataset_id, entry.task_id, entry.value, entry.dataset_revision) == ("org/bench", "zeroshot_test", 0.7, COMMIT)
    assert entry.source_name == "vtde-bench" and entry.date == "2026-01-01" and "acc1 as a fraction" in entry.notes


class StandIn:
    """huggingface_hub's two calls that --push makes, stood in for: they record what they are asked."""

    def __init__(self, monkeypatch, tmp_path: Path, files: dict[str, str]):
        import huggingface_hub
        from huggingface_hub.errors import EntryNotFoundError

        self.calls: list[tuple] = []
        repo = tmp_path / "repo"
        for name, text in files.items():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_text(text)

        def hf_hub_download(repo_id, filename, repo_type=None, **kwargs):
            self.calls.append(("download", repo_id, filename, repo_type))
            if not (repo / filename).is_file():
                raise EntryNotFoundError(f"{filename} not in {repo_id}")
            return str(repo / filename)

        def create_commit(api, repo_id, operations, *, commit_message, create_pr=None, **kwargs):
            self.calls.append(("commit", repo_id, [o.path_in_repo for o in operations], create_pr, kwargs.get("revision")))
            return type("Info", (), {"pr_url": f"https://huggingface.co/{repo_id}/discussions/1"})()

        monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
        monkeypatch.setattr(huggingface_hub.HfApi, "create_commit", create_commit)


def test_push_prints_the_diff_and_opens_a_pull_request_only_with_yes(tmp_path, capsys, monkeypatch):
    results = tmp_path / "results"
    datacomp_results(results, hub=True, skip=tuple(t for t in DATACOMP.tasks if t != "cifar10"))
    hub = StandIn(monkeypatch, tmp_path, {"README.md": "---\nlicense: mit\n---\n# A model\n"})
    assert main(["export", str(results), "--format", "model-index", "--push", "me/model"]) == 0
    out = capsys.readouterr().out
    assert "--- a/README.md" in out and "+++ b/README.md" in out and "+model-index:" in out and "(a dry run" in out
    assert [c[0] for c in hub.calls] == ["download", "download"]  # read only: nothing proposed yet
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert main(["export", str(results), "--format", "model-index", "--push", "me/model", "--yes"]) == 2
    assert "HF_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert main(["export", str(results), "--format", "model-index", "--push", "me/model", "--yes"]) == 0
    assert hub.calls[-1] == ("commit", "me/model", ["README.md"], True, None)  # a pull request, never a commit to main
    assert "opened https://huggingface.co/me/model/discussions/1" in capsys.readouterr().out


def test_push_of_eval_results_proposes_new_files(tmp_path, capsys, monkeypatch):
    hub = StandIn(monkeypatch, tmp_path, {})
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert main(["export", str(benchmark_result(tmp_path)), "--format", "eval-results", "--push", "me/model", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "--- /dev/null" in out and "+++ b/.eval_results/bench.yaml" in out
    assert hub.calls[-1] == ("commit", "me/model", [".eval_results/bench.yaml"], True, None)


def test_mteb_result_folders_import_as_another_protocol(tmp_path):
    folder = tmp_path / "results" / "openai__clip-vit-base-patch32" / "3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268"
    folder.mkdir(parents=True)
    (folder / "CIFAR10ZeroShot.json").write_text(json.dumps({
        "dataset_revision": "69a62dd171e24a133d193073e73fda4dbb823266", "task_name": "CIFAR10ZeroShot", "mteb_version": "2.1.0",
        "scores": {"test": [{"accuracy": 0.8831, "main_score": 0.8831, "hf_subset": "default", "languages": ["eng-Latn"]}]},
        "evaluation_time": 12.3}))
    (folder / "Flickr30kT2IRetrieval.json").write_text(json.dumps({
        "task_name": "Flickr30kT2IRetrieval", "mteb_version": "2.1.0",
        "scores": {"test": [{"ndcg_at_10": 0.71, "main_score": 0.71, "hf_subset": "default", "languages": ["eng-Latn"]}]}}))
    (folder / "model_meta.json").write_text(json.dumps({"name": "openai/clip-vit-base-patch32"}))  # not a result: skipped
    helpers.write_result(tmp_path / "results", slug="mine", task="cifar10", metrics={"acc1": 0.9, "acc5": 0.99,
                                                                                     "mean_per_class_recall": 0.9})
    rows = load_rows(tmp_path / "results")
    mteb = {r.task_name: r for r in rows if r.source == "mteb"}
    assert {r.model_name for r in mteb.values()} == {"openai/clip-vit-base-patch32 (MTEB, another protocol)"}
    assert mteb["cifar10"].metrics == {"acc1": 0.8831}  # MTEB's one-template accuracy, in our column, labelled
    assert mteb["MTEB Flickr30kT2IRetrieval"].metrics == {"ndcg_at_10": 0.71, "main_score": 0.71}  # no column of ours
    board = leaderboard.build(rows)
    assert [r.model for r in board.rows if r.rank is not None] == ["mine"]  # never ranked as our own runs
    (row,) = [r for r in board.rows if r.model.endswith("(MTEB, another protocol)")]
    assert row.scores["cifar10"] == 0.8831 and row.rank is None


def test_a_hub_benchmark_needs_its_task_id(tmp_path):
    from vtde_bench.errors import UserError
    from vtde_bench.tasks import load_card

    benchmark_result(tmp_path)
    card = tmp_path / "bench.toml"
    card.write_text(card.read_text().replace('hub_benchmark_task = "zeroshot_test"\n', ""))
    with pytest.raises(UserError, match="hub_benchmark' and hub_benchmark_task go together"):
        load_card(card)


def test_bad_export_input_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty"), "--format", "model-index", "--to", str(tmp_path / "out")]) == 2
    assert "no vtde-bench results to export" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "empty"), "--format", "mteb", "--to", str(tmp_path / "out")]) == 2
    assert "invalid choice: 'mteb'" in capsys.readouterr().err
    helpers.write_result(tmp_path / "r", slug="m", task="cifar10", metrics={"acc1": 0.9})
    assert main(["export", str(tmp_path / "r"), "--format", "openclip-csv"]) == 2
    assert "--to DIR is required" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_datacomp_jsonl_row_stands_in_the_leaderboard_labelled(tmp_path):
    folder = tmp_path / "their-run"
    folder.mkdir()
    (folder / "eval_results.jsonl").write_text(json.dumps(
        {"key": "cifar10", "dataset": "CIFAR-10", "metrics": {"acc1": 0.8983, "acc5": 0.99, "mean_per_class_recall": 0.8983,
                                                             "main_metric": 0.8983}}) + "\n")
    helpers.write_result(tmp_path / "ours", slug="mine", task="cifar10", metrics={"acc1": 0.9, "acc5": 0.99, "mean_per_class_recall": 0.9})
    board = leaderboard.build(load_rows([tmp_path / "ours", folder]))
    rows = {r.model: r for r in board.rows}
    assert rows["their-run (DataComp eval_results.jsonl)"].scores["cifar10"] == 0.8983
    assert rows["their-run (DataComp eval_results.jsonl)"].rank is None and rows["mine"].rank == 1
