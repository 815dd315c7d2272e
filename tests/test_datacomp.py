"""DataComp's 38 tasks: every card runs end to end on a fixture in its source's real layout, the class subsets
equal the published lists, the lists a card takes from its source are read (and checked) as DataComp reads
them, and the group's aggregates equal naive means, on seeded results and on open_clip's published rows.

Fixtures follow DataComp's webdatasets (djghosh/wds_<task>_test): test/nshards.txt, test/N.tar with KEY.<ext>
and KEY.cls (KEY.npy metadata beside them in the WILDS and fairness sets), classnames.txt and
zeroshot_classification_templates.txt at the root, one entry per line. Images are photo-sized (640x427, portrait,
odd widths) except for the sets whose images are small squares (FMoW 224 px, Camelyon17 96 px).
"""

from __future__ import annotations

import dataclasses
import io
import json
import random
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import helpers
from vtde_bench import RunOptions, evaluate
from vtde_bench.analysis import leaderboard
from vtde_bench.data import bind_task
from vtde_bench.errors import UserError
from vtde_bench.reference import published_rows
from vtde_bench.results import published_results
from vtde_bench.tasks import groups, load_tasks, tasks_dir

TASKS = tasks_dir()
DATACOMP = groups()["datacomp"]
PUBLISHED_LISTS = Path(__file__).parent / "fixtures" / "published"
SIZES = [(640, 427), (427, 640), (97, 311), (500, 333)]
EXT = {"iwildcam": "jpg", "fmow": "png", "camelyon17": "png"}  # as their hub viewers show; webp elsewhere (CLIP_benchmark's export default)
SQUARE = {"fmow": 224, "camelyon17": 96}


def lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")]


def image_bytes(name: str, i: int) -> bytes:
    size = (SQUARE[name],) * 2 if name in SQUARE else SIZES[i % len(SIZES)]
    rng = np.random.default_rng(i)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    ext = EXT.get(name, "webp")
    return helpers.encode(image, {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[ext], **({"lossless": True} if ext == "webp" else {}))


# Each sample's KEY.npy in the sets that have one: an int64 array of the fields DataComp's evaluators name
# (eval_utils/wilds_eval.py, fairness_eval.py), in their order, as WILDS' metadata arrays hold them.
METADATA = {
    "fmow": lambda i, y: [i % 6, 14 + i % 2, y],  # region (WILDS' six; 5 is "Other"), year - 2002, y
    "iwildcam": lambda i, y: [i % 4, 3000 + i, 2013 + i % 2, 1 + i % 12, 1 + i % 28, i % 24, i % 60, (7 * i) % 60, y],
    "camelyon17": lambda i, y: [2, 40 + i % 10, y],  # hospital, slide, y: the test split is hospital 2's slides
    "dollar_street": lambda i, y: [i % 4, 30 + 11 * i, i % 4],  # income_ds, income_meta, region
    "geode": lambda i, y: [i % 6, (5 * i) % 19],  # region, country
}


def npy(values: list[int]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array(values, dtype=np.int64))
    return buffer.getvalue()


def write_datacomp_wds(folder: Path, name: str, labels: list[int], classnames, templates, *, metadata: bool = False) -> None:
    """DataComp's webdataset: one shard of KEY.<ext> + KEY.cls (+ KEY.npy), and the root text files as
    CLIP_benchmark's export writes them (print(*items, sep="\\n"): one per line, a final newline)."""
    (folder / "test").mkdir(parents=True)
    with tarfile.open(folder / "test" / "0.tar", "w") as tar:
        for i, label in enumerate(labels):
            members = {f"s{i:07d}.{EXT.get(name, 'webp')}": image_bytes(name, i), f"s{i:07d}.cls": f"{label}".encode()}
            if metadata:
                members[f"s{i:07d}.npy"] = npy(METADATA[name](i, label))
            for member, data in members.items():
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    (folder / "test" / "nshards.txt").write_text("1")
    (folder / "classnames.txt").write_text("".join(f"{c}\n" for c in classnames), encoding="utf-8")
    (folder / "zeroshot_classification_templates.txt").write_text("".join(f"{t}\n" for t in templates), encoding="utf-8")


def small(task, n: int, templates=None):
    """The card with its size set to the fixture's (and, for 1,000-class cards, two templates: 80,000 prompts
    would take minutes)."""
    out = dataclasses.replace(task, source=dataclasses.replace(task.source, num_samples=n))
    if templates is not None:
        out = dataclasses.replace(out, templates=tuple(templates))
    return out


CLASSIFICATION = [t for t in DATACOMP.tasks if t not in ("flickr30k", "mscoco", "winogavil", "cifar10", "imagenet1k")]


def test_the_group_is_datacomps_38():
    assert len(DATACOMP.members) == 38 and DATACOMP.pending == ()
    assert len(CLASSIFICATION) == 33
    cards = load_tasks("datacomp")
    assert len(cards) == 38 and sum(c.source.num_samples for c in cards) == 697_369  # tasklist.yml's sizes
    mpcr = {t.name for t in cards if t.main_metric == "mean_per_class_recall"}
    assert mpcr == {"caltech101", "fgvc_aircraft", "flowers", "pets"}  # tasklist.yml's main metrics
    assert all(len(t.source.revision) == 40 and int(t.source.revision, 16) >= 0 for t in cards)


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_card_runs_end_to_end_on_its_webdataset(name, tmp_path, tiny_vtde):
    (task,) = load_tasks(name)
    n = 6
    names = list(task.classnames) or [f"class {i}" for i in range(task.num_classes)]
    labels = [(i * 7 + 1) % task.num_classes for i in range(n)]
    templates = list(task.templates[:2]) if task.templates else ["a photo of a {c}.", "{c} in the wild."]
    if task.templates and task.num_classes < 1000:
        templates = list(task.templates)
    write_datacomp_wds(tmp_path / "data" / name, name, labels, names, templates, metadata=name in METADATA)
    spec = small(task, n, templates if task.templates else None)
    result = evaluate(str(tiny_vtde), [spec], options=RunOptions(output_dir=tmp_path / "out", data_dir=tmp_path / "data", workers=0,
                                                               bootstrap=20))[name]
    assert result.dataset.num_images == n and result.dataset.num_texts == task.num_classes * len(templates)
    assert result.main_score == result.metrics[task.main_metric]
    assert len(result.per_class_recall) == task.num_classes
    assert ("acc5" in result.metrics) == (task.num_classes >= 5)
    written = json.loads((tmp_path / "out").rglob(f"{name}.json").__next__().read_text())
    assert written["dataset"]["revision"] == task.source.revision
    for m in task.card_metrics:  # DataComp's special metrics, with their intervals and (worst-group) their groups
        assert 0 <= result.metrics[m.name] <= 1 and m.name in result.intervals
        assert (m.name in (written["per_group"] or {})) == (m.type == "worst_group")


def test_imagenet_subsets_equal_the_published_lists():
    wnids = lines(TASKS / "data/imagenet1k_wnids.txt")
    names = lines(TASKS / "classnames/imagenet1k.txt")
    for variant in ("a", "r", "o"):
        (task,) = load_tasks(f"imagenet-{variant}")
        indices = [int(x) for x in lines(TASKS / f"data/imagenet_{variant}_indices.txt")]
        published = lines(PUBLISHED_LISTS / f"clip_benchmark_imagenet_{variant}_wnids.txt")
        assert [wnids[i] for i in indices] == published  # hendrycks' indices (A, R) and CLIP_benchmark's wnids agree
        assert task.num_classes == 200 and task.classnames == tuple(names[i] for i in indices)
        assert task.source.class_folders == tuple(published)  # an imagefolder copy in wnid folders maps 200-way
    (a,) = load_tasks("imagenet-a")
    assert a.classnames[0] == names[6] == "stingray"  # indices_in_1k starts at 6


def test_imagefolder_copy_of_imagenet_a_maps_wnid_folders_to_200_classes(tmp_path, tiny_vtde):
    (task,) = load_tasks("imagenet-a")
    wnids = task.source.class_folders
    rows = [(image_bytes("imagenet-a", i), label) for i, label in enumerate([0, 199, 57, 3])]
    helpers.write_imagefolder(tmp_path / "data" / "imagenet-a", "test", rows, classnames=wnids)
    spec = small(task, len(rows), task.templates[:1])
    result = evaluate(str(tiny_vtde), [spec], options=RunOptions(output_dir=None, data_dir=tmp_path / "data", workers=0, bootstrap=0))["imagenet-a"]
    assert sorted(result.samples["label"]) == [0, 3, 57, 199]


def test_empty_class_name_keeps_its_place(tmp_path):
    """CLIP_benchmark's CLEVR Distance names class 3 ''; skipping it would shift every label after it."""
    (task,) = load_tasks("clevr_closest_object_distance")
    assert task.classnames == ("very nearby", "nearby", "near", "", "distant", "very distant")
    write_datacomp_wds(tmp_path / task.name, task.name, [3], task.classnames, task.templates)
    assert bind_task(task, tmp_path) == task  # the source's files equal the card's, blank line included


def test_lists_from_the_source_are_read_as_datacomp_reads_them(tmp_path):
    (task,) = load_tasks("sun397")
    assert task.from_source == ("classnames",) and not task.bound
    names = [f" name {i} " for i in range(396)] + [""]
    write_datacomp_wds(tmp_path / "sun397", "sun397", [0], names, task.templates)
    bound = bind_task(task, tmp_path)
    assert bound.classnames[:2] == ("name 0", "name 1") and bound.classnames[-1] == "" and len(bound.classnames) == 397
    (tmp_path / "sun397" / "classnames.txt").write_text("a\nb\n")
    with pytest.raises(UserError, match="lists 2 classes but the card states 397"):
        bind_task(task, tmp_path)
    (tmp_path / "sun397" / "classnames.txt").unlink()
    with pytest.raises(UserError, match=f"which {tmp_path / 'sun397'} lacks; use a complete copy"):
        bind_task(task, tmp_path)


def test_a_card_that_differs_from_its_source_is_an_error(tmp_path, tiny_vtde):
    (task,) = load_tasks("gtsrb")
    names = list(task.classnames)
    names[17] = "no entry"
    write_datacomp_wds(tmp_path / "gtsrb", "gtsrb", [0, 1], names, task.templates)
    with pytest.raises(UserError, match=r"differs from the card's classnames \(43\) at entry 18: 'no entry' there"):
        bind_task(task, tmp_path)
    write_datacomp_wds(tmp_path / "b" / "gtsrb", "gtsrb", [0, 1], task.classnames, task.templates[:2])
    with pytest.raises(UserError, match="templates.txt \\(2 entries\\) differs .* at entry 3: nothing there"):
        bind_task(task, tmp_path / "b")
    from vtde_bench.cli import main

    assert main(["run", "--model", str(tiny_vtde), "--tasks", "gtsrb", "--data-dir", str(tmp_path), "--output-dir",
                 str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- aggregates


def group_metric(task: str) -> str:
    if task in DATACOMP.metrics:
        return DATACOMP.metrics[task]
    (spec,) = load_tasks(task)
    return spec.main_metric


def test_published_rows_reproduce_the_published_38_task_average():
    board = leaderboard.build(published_results(), group=DATACOMP)
    averages = {r["label"]: r["datacomp_average"] for r in published_rows() if "datacomp_average" in r}
    assert len(averages) == 7
    for row in board.rows:
        assert row.average is not None and not row.missing
        # 38 inputs and the average each rounded to 4 decimals: at most 1e-4 apart (a swapped task moves it more)
        assert abs(row.average - averages[row.model]) < 1e-4, row.model
        assert set(row.categories) == set(DATACOMP.categories)
        naive = sum(row.scores[t] for t in DATACOMP.categories["VTAB"]) / 13
        assert row.categories["VTAB"] == pytest.approx(naive, abs=1e-12)


def test_group_aggregates_equal_naive_means_and_name_what_is_missing(tmp_path, capsys):
    rng = random.Random(0)
    scores = {}
    for task in DATACOMP.tasks:
        metric = group_metric(task)
        value = round(rng.random(), 4)
        scores[task] = value
        (spec,) = load_tasks(task)
        metrics = {**{m: value for m in spec.metrics}, metric: value}
        if task == "fmow":  # a result of the card's version 1, which had no group metrics
            metrics = {"acc1": value, "acc5": value, "mean_per_class_recall": value}
        helpers.write_result(tmp_path / "partial", slug="mine", task=task, kind=spec.type, main_metric=spec.main_metric
                             if task != "fmow" else "acc1", metrics=metrics, num_classes=spec.num_classes
                             if spec.type == "zeroshot_classification" else 10)
    board = leaderboard.build(published_results() + _rows(tmp_path / "partial"), group=DATACOMP)
    (mine,) = [r for r in board.rows if r.model == "mine"]
    assert mine.average is None and mine.rank is None
    assert mine.flags == ["missing fmow (no acc_worst_region)"]
    assert set(mine.categories) == set(DATACOMP.categories)  # none of them holds FMoW
    assert "fmow" not in mine.scores and mine.scores["geode"] == scores["geode"]
    assert mine.scores["winogavil"] == scores["winogavil"]
    for name in mine.categories:
        members = DATACOMP.categories[name]
        assert mine.categories[name] == pytest.approx(sum(scores[t] for t in members) / len(members), abs=1e-12)

    (spec,) = load_tasks("fmow")  # the card's version 2: with its special metrics, the row is complete
    helpers.write_result(tmp_path / "partial", slug="mine", task="fmow", kind=spec.type, main_metric=spec.main_metric,
                         version=2, metrics={m: scores["fmow"] for m in spec.metrics}, num_classes=spec.num_classes)
    board = leaderboard.build(published_results() + _rows(tmp_path / "partial"), group=DATACOMP)
    (mine,) = [r for r in board.rows if r.model == "mine"]
    assert not mine.flags and mine.rank is not None
    assert mine.average == pytest.approx(sum(scores.values()) / 38, abs=1e-12)

    from vtde_bench.cli import main

    assert main(["leaderboard", str(tmp_path / "partial"), "--group", "datacomp", "--format", "csv"]) == 0
    csv = capsys.readouterr().out
    assert "ImageNet dist. shifts" in csv.splitlines()[0] and "VTAB" in csv.splitlines()[0]


def _rows(folder: Path):
    from vtde_bench.results import load_rows

    return load_rows(folder)
