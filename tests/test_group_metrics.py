"""DataComp's special metrics of zero-shot classification: worst-group accuracy (FMoW, Dollar Street, GeoDE,
Camelyon17) and macro-F1 (iWildCam), each against a naive reference on seeded data (scikit-learn's `f1_score`
for F1, dictionaries of lists for groups), with empty groups, skipped groups and ties; their bootstrap
statistics against the same references on resampled rows; the cards that define them; and the metadata read
from each shard's KEY.npy, or from columns in other layouts.
"""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score

import helpers
from vtde_bench import RunOptions, evaluate
from vtde_bench import metrics as M
from vtde_bench.errors import UserError
from vtde_bench.kinds import get_kind
from vtde_bench.kinds.classification import card_metric_statistic
from vtde_bench.tasks import load_card, load_tasks

KIND = get_kind("zeroshot_classification")


# ----------------------------------------------------------------------------- naive references


def naive_assigned(scores: np.ndarray, labels: np.ndarray) -> list[int]:
    """Per image: its class when every other class scores strictly lower, else the first best-scoring other."""
    out = []
    for row, label in zip(scores, labels):
        others = [(s, c) for c, s in enumerate(row) if c != label]
        best = max(s for s, _ in others)
        out.append(label if best < row[label] else min(c for s, c in others if s == best))
    return out


def naive_worst(hits: list[bool], groups: list[int], skip=()) -> float | None:
    by_group: dict[int, list[bool]] = {}
    for hit, g in zip(hits, groups):
        if g not in skip:
            by_group.setdefault(g, []).append(hit)
    return min(sum(v) / len(v) for v in by_group.values()) if by_group else None


def tied_embeddings(seed: int, n: int, c: int, d: int = 4):
    """Embeddings on a coarse grid, so that many class scores tie exactly."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(-1, 2, (n, d), generator=g).float()
    classes = torch.randint(-1, 2, (c, d), generator=g).float()
    labels = torch.randint(0, c, (n,), generator=g)
    return images, classes, labels


# ----------------------------------------------------------------------------- pure functions


@pytest.mark.parametrize("seed", range(20))
def test_assigned_classes_follow_the_rank_and_break_ties_against_the_model(seed):
    images, classes, labels = tied_embeddings(seed, 60, 7)
    assigned = M.assigned_classes(images, classes, labels, chunk_size=16)
    ranks, _ = M.classification_ranks(images, classes, labels)
    assert assigned.tolist() == naive_assigned((images @ classes.T).numpy(), labels.numpy())
    assert ((assigned == labels) == (ranks == 1)).all()


def test_assigned_classes_with_twins_give_the_tie_to_the_first_twin():
    images = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    classes = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # classes 0 and 1 share their prompts
    labels = torch.tensor([0, 1, 2])
    twins = torch.tensor([0, 0, 2])
    assigned = M.assigned_classes(images, classes, labels, twins=twins)
    ranks, _ = M.classification_ranks(images, classes, labels, twins=twins)
    assert assigned.tolist() == [0, 0, 2] and ranks.tolist() == [1, 2, 1]


@pytest.mark.parametrize("seed", range(30))
def test_macro_f1_equals_scikit_learn_over_the_classes_present(seed):
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(1, 80)), int(rng.integers(2, 15))
    labels = rng.integers(0, c, n)
    assigned = np.where(rng.random(n) < 0.5, labels, rng.integers(0, c + 3, n))  # some assigned to absent classes
    ours = M.macro_f1(torch.tensor(labels), torch.tensor(assigned))
    theirs = f1_score(labels, assigned, average="macro", labels=np.unique(labels))
    assert ours == pytest.approx(theirs, abs=1e-12)


@pytest.mark.parametrize("seed", range(30))
def test_worst_group_equals_the_naive_minimum_with_empty_and_skipped_groups(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    groups = rng.choice([0, 2, 3, 7], n)  # groups 1, 4, 5 and 6 are empty
    hits = rng.random(n) < 0.6
    skip = (7,) if seed % 2 else ()
    masked = torch.tensor(np.where(np.isin(groups, skip), -1, groups))
    found = M.group_counts(torch.tensor(hits), masked)
    expected = naive_worst(list(hits), list(groups), skip)
    if expected is None:
        assert found == {}
        return
    h, k = M.worst_group(found)
    assert h / k == expected
    assert set(found) == set(groups) - set(skip) and all(v[1] > 0 for v in found.values())


# ----------------------------------------------------------------------------- bootstrap statistics


def test_bootstrap_statistics_equal_the_references_on_resampled_rows():
    rng = np.random.default_rng(3)
    n = 40
    labels = rng.integers(0, 6, n)
    assigned = np.where(rng.random(n) < 0.4, labels, rng.integers(0, 6, n))
    groups = rng.choice([-1, 0, 2, 5], n)
    hits = rng.random(n) < 0.5
    samples = pd.DataFrame({"label": labels, "f1:assigned": assigned, "worst:group": groups, "worst:hit": hits})
    idx = rng.integers(0, n, (25, n))
    idx[0] = np.arange(n)  # the identity resample is the point estimate
    f1 = card_metric_statistic(samples, "f1", labels)(idx)
    worst = card_metric_statistic(samples, "worst", labels)(idx)
    for b, rows in enumerate(idx):
        assert f1[b] == pytest.approx(f1_score(labels[rows], assigned[rows], average="macro", labels=np.unique(labels[rows])))
        g = groups[rows]
        expected = naive_worst(list(hits[rows][g >= 0]), list(g[g >= 0]))
        assert (np.isnan(worst[b]) and expected is None) or worst[b] == pytest.approx(expected)
    assert f1[0] == pytest.approx(M.macro_f1(torch.tensor(labels), torch.tensor(assigned)))
    with pytest.raises(ValueError, match="no columns for the metric 'other'"):
        card_metric_statistic(samples, "other", labels)


# ----------------------------------------------------------------------------- cards


def card(tmp_path: Path, metrics: str, *, fields='["region", "year", "y"]', extra: str = "") -> Path:
    (tmp_path / "names.txt").write_text("cat\ndog\nbird\nfish\nfrog\nowl\n")
    (tmp_path / "templates.txt").write_text("a photo of a {c}.\n")
    path = tmp_path / "card.toml"
    path.write_text(f'''name = "groups"
type = "zeroshot_classification"
version = 1
{extra}
[source]
path = "data"
format = "webdataset"
split = "test"
num_samples = 12
metadata_fields = {fields}

[prompts]
classnames = "names.txt"
templates = "templates.txt"
{metrics}''')
    return path


@pytest.mark.parametrize("metrics, problem", [
    ('[metrics.acc_wg]\ntype = "worst"\nby = "region"', "metrics.acc_wg.type' must be one of worst_group, macro_f1"),
    ('[metrics.acc_wg]\ntype = "worst_group"\nby = "country"', "is not one of source.metadata_fields (region, year, y)"),
    ('[metrics.acc_wg]\ntype = "worst_group"', "metrics.acc_wg.by' is missing"),
    ('[metrics.acc_wg]\ntype = "worst_group"\nby = "region"\ntop = 7', "must be between 1 and the 6 classes"),
    ('[metrics.acc_wg]\ntype = "worst_group"\nby = "region"\nskip = [-1]', "must list group values"),
    ('[metrics.acc_wg]\ntype = "macro_f1"\nby = "region"', "metrics.acc_wg.by' is not a known field"),
    ('[metrics.acc1]\ntype = "macro_f1"', "not as a built-in metric"),
    ('[metrics."a:b"]\ntype = "macro_f1"', "must be named with letters"),
])
def test_bad_metric_definitions_name_the_field(tmp_path, metrics, problem):
    with pytest.raises(UserError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        load_card(card(tmp_path, metrics))


def test_a_card_metric_can_be_the_main_metric_and_enters_the_profile(tmp_path):
    spec = load_card(card(tmp_path, '[metrics.acc_wg]\ntype = "worst_group"\nby = "region"', extra='main_metric = "acc_wg"'))
    assert spec.main_metric == "acc_wg" and spec.metrics[-1] == "acc_wg"
    other = load_card(card(tmp_path, '[metrics.acc_wg]\ntype = "worst_group"\nby = "year"'))
    assert KIND.profile(spec)["card_metrics"] != KIND.profile(other)["card_metrics"]
    (plain,) = load_tasks("cifar10")
    assert "card_metrics" not in KIND.profile(plain)  # cards without them keep their profiles
    with pytest.raises(UserError, match="source.metadata_fields' must list distinct field names"):
        load_card(card(tmp_path, "", fields='["a", "a"]'))


def test_the_metrics_table_does_not_apply_to_retrieval(tmp_path):
    (tmp_path / "c.toml").write_text('name = "r"\ntype = "retrieval"\nversion = 1\n[source]\npath = "d"\nsplit = "test"\n'
                                     'num_samples = 1\n[metrics.x]\ntype = "macro_f1"\n')
    with pytest.raises(UserError, match="'metrics' does not apply to a retrieval task"):
        load_card(tmp_path / "c.toml")


# ----------------------------------------------------------------------------- end to end, against DataComp's computation


def npy(values, dtype=np.int64) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array(values, dtype=dtype))
    return buffer.getvalue()


def write_shards(folder: Path, rows: list[tuple[int, list | None]], *, shard_size: int = 5, dtype=np.int64) -> None:
    """A webdataset copy: KEY.jpg (photo-sized), KEY.cls and (unless None) KEY.npy, in several shards."""
    (folder / "test").mkdir(parents=True)
    sizes = [(640, 427), (427, 640), (333, 501)]
    for start in range(0, len(rows), shard_size):
        with tarfile.open(folder / "test" / f"{start // shard_size}.tar", "w") as tar:
            for i in range(start, min(start + shard_size, len(rows))):
                label, meta = rows[i]
                w, h = sizes[i % 3]
                image = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
                from PIL import Image

                members = {f"{i:06d}.jpg": helpers.encode(Image.fromarray(image), "JPEG"), f"{i:06d}.cls": str(label).encode()}
                if meta is not None:
                    members[f"{i:06d}.npy"] = npy(meta, dtype)
                for name, data in members.items():
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


FMOW_LIKE = '''[metrics.acc_worst_region]
type = "worst_group"
by = "region"

[metrics.acc_worst_region_wilds]
type = "worst_group"
by = "region"
skip = [5]

[metrics.acc_top3_worst_year]
type = "worst_group"
by = "year"
top = 3

[metrics.F1-macro_all]
type = "macro_f1"
'''


def test_group_metrics_end_to_end_equal_datacomps_computation(tmp_path, tiny_vtde):
    rows = [(i % 6, [[0, 1, 5, 3][i % 4], 14 + i % 2, i % 6]) for i in range(12)]  # regions 2 and 4 empty
    write_shards(tmp_path / "data", rows)
    spec = load_card(card(tmp_path, FMOW_LIKE, extra='main_metric = "acc_worst_region"'))
    result = evaluate(str(tiny_vtde), [spec], options=RunOptions(output_dir=tmp_path / "out", workers=0, bootstrap=50))["groups"]
    samples = result.samples.sort_values("row")
    ranks, labels = samples["rank"].to_numpy(), samples["label"].to_numpy()
    region = [rows[r][1][0] for r in samples["row"]]
    year = [rows[r][1][1] for r in samples["row"]]
    # DataComp (WILDS' standard_group_eval): groups 0..max, those with no images left out, the minimum taken.
    assert result.metrics["acc_worst_region"] == naive_worst(list(ranks == 1), region)
    assert result.metrics["acc_worst_region_wilds"] == naive_worst(list(ranks == 1), region, skip=(5,))
    assert result.metrics["acc_top3_worst_year"] == naive_worst(list(ranks <= 3), year)
    assigned = samples["F1-macro_all:assigned"].to_numpy()
    assert ((assigned == labels) == (ranks == 1)).all()
    assert result.metrics["F1-macro_all"] == pytest.approx(f1_score(labels, assigned, average="macro", labels=np.unique(labels)))
    assert result.main_score == result.metrics["acc_worst_region"]
    assert set(result.per_group["acc_worst_region"]) == {"region=0", "region=1", "region=3", "region=5"}
    assert set(result.per_group["acc_worst_region_wilds"]) == {"region=0", "region=1", "region=3"}
    assert all(name in result.intervals for name in ("acc_worst_region", "acc_top3_worst_year", "F1-macro_all"))
    written = json.loads(next((tmp_path / "out").rglob("groups.json")).read_text())
    hits, n = written["counts"]["acc_worst_region"]
    assert hits / n == written["metrics"]["acc_worst_region"] and written["per_group"] == result.per_group


def test_metadata_change_the_fingerprint_and_float_arrays_are_read(tmp_path):
    from vtde_bench.data import load_task_data

    spec = load_card(card(tmp_path, '[metrics.acc_wg]\ntype = "worst_group"\nby = "region"'))
    rows = [(i % 6, [i % 3, 14, i % 6]) for i in range(12)]
    write_shards(tmp_path / "data", rows, dtype=np.float32)
    first = load_task_data(spec)
    assert first.metadata == {"region": [i % 3 for i in range(12)], "year": [14] * 12, "y": [i % 6 for i in range(12)]}
    import shutil

    shutil.rmtree(tmp_path / "data")
    write_shards(tmp_path / "data", [(label, [meta[0] + 1, *meta[1:]]) for label, meta in rows])
    assert load_task_data(spec).fingerprint != first.fingerprint


@pytest.mark.parametrize("bad, problem", [
    (None, "has none of metadata, but the card's source.metadata_fields names 3 (region, year, y)"),
    ([1, 14], "has 2 values of metadata"),
    ([1.5, 14, 0], "has metadata region = 1.5, not a group index"),
    ([-1, 14, 0], "has metadata region = -1.0, not a group index"),
])
def test_bad_metadata_is_a_clear_error(tmp_path, bad, problem):
    from vtde_bench.data import load_task_data

    spec = load_card(card(tmp_path, '[metrics.acc_wg]\ntype = "worst_group"\nby = "region"'))
    rows = [(0, [0, 14, 0])] * 11 + [(1, bad)]
    write_shards(tmp_path / "data", rows, dtype=np.float64)
    with pytest.raises(UserError, match=r"row '000011' " + problem.replace("(", r"\(").replace(")", r"\)")):
        load_task_data(spec)


def test_metadata_columns_of_a_parquet_copy(tmp_path, tiny_vtde):
    from PIL import Image

    images = [helpers.encode(Image.new("RGB", (640, 427), (i * 20, 0, 0)), "PNG") for i in range(12)]
    folder = tmp_path / "data"
    folder.mkdir()
    pd.DataFrame({"image": [{"bytes": b, "path": None} for b in images], "label": [i % 6 for i in range(12)],
                  "region": [i % 4 for i in range(12)], "year": [14] * 12, "y": [i % 6 for i in range(12)]}
                 ).to_parquet(folder / "test-00000-of-00001.parquet")
    path = card(tmp_path, '[metrics.acc_wg]\ntype = "worst_group"\nby = "region"')
    path.write_text(path.read_text().replace('format = "webdataset"', 'format = "parquet"'))
    spec = dataclasses.replace(load_card(path))
    result = evaluate(str(tiny_vtde), [spec], options=RunOptions(output_dir=None, workers=0, bootstrap=0))["groups"]
    region = [i % 4 for i in result.samples["row"]]
    assert result.metrics["acc_wg"] == naive_worst(list(result.samples["rank"] == 1), region)
