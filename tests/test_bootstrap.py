"""Bootstrap intervals: the vectorised statistics equal a naive recomputation, and coverage is near nominal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vtde_bench import bootstrap
from vtde_bench.kinds import get_kind

CLS, RET = get_kind("zeroshot_classification"), get_kind("retrieval")
METRICS = {"zeroshot_classification": ("acc1", "acc5", "mean_per_class_recall"), "retrieval": tuple(m.name for m in RET.metrics)}


def classification_samples(rng, n=60, classes=7):
    labels = rng.integers(0, classes, n)
    ranks = rng.integers(1, 9, n)
    return pd.DataFrame({"key": [f"k{i:03d}" for i in range(n)], "label": labels, "rank": ranks})


def retrieval_samples(rng, n=25):
    rows = []
    for i in range(n):
        rows.append(("image", f"k{i:03d}", -1, int(rng.integers(1, 15))))
        for j in range(int(rng.integers(1, 6))):
            rows.append(("text", f"k{i:03d}", j, int(rng.integers(1, 15))))
    return pd.DataFrame(rows, columns=["query", "key", "caption_index", "rank"])


def naive_classification(samples: pd.DataFrame, idx: np.ndarray, classes: int) -> dict[str, float]:
    picked = samples.iloc[idx]
    recalls = [np.mean(picked["rank"][picked["label"] == c] <= 1) for c in range(classes) if (picked["label"] == c).any()]
    return {"acc1": np.mean(picked["rank"] <= 1), "acc5": np.mean(picked["rank"] <= 5), "mean_per_class_recall": np.mean(recalls)}


def naive_retrieval(samples: pd.DataFrame, idx: np.ndarray) -> dict[str, float]:
    images = samples[samples["query"] == "image"].reset_index(drop=True)
    texts = samples[samples["query"] == "text"]
    picked = images.iloc[idx]
    out = {}
    caption_ranks = np.concatenate([texts[texts["key"] == key]["rank"].to_numpy() for key in picked["key"]])
    for k in (1, 5, 10):
        out[f"image_to_text_recall@{k}"] = np.mean(picked["rank"] <= k)
        out[f"text_to_image_recall@{k}"] = np.mean(caption_ranks <= k)
    out["mean_recall@1"] = (out["image_to_text_recall@1"] + out["text_to_image_recall@1"]) / 2
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_statistics_equal_naive_resamples(seed):
    rng = np.random.default_rng(seed)
    cls = classification_samples(rng)
    n, statistic = CLS.statistic(cls, METRICS[CLS.type])
    idx = rng.integers(0, n, size=(4, n))
    stats = statistic(idx)
    for b in range(4):
        for name, value in naive_classification(cls, idx[b], 7).items():
            assert stats[name][b] == pytest.approx(value), name

    ret = retrieval_samples(rng)
    n, statistic = RET.statistic(ret, METRICS[RET.type])
    idx = rng.integers(0, n, size=(4, n))
    stats = statistic(idx)
    for b in range(4):
        for name, value in naive_retrieval(ret, idx[b]).items():
            assert stats[name][b] == pytest.approx(value), name


def test_intervals_contain_the_point_estimate_and_are_seeded():
    rng = np.random.default_rng(5)
    samples = retrieval_samples(rng, n=60)
    a = bootstrap.intervals(RET, samples, METRICS["retrieval"], resamples=300)
    b = bootstrap.intervals(RET, samples, METRICS["retrieval"], resamples=300)
    assert a == b
    images = samples[samples["query"] == "image"]
    point = np.mean(images["rank"] <= 5)
    low, high = a["image_to_text_recall@5"]
    assert 0 <= low <= point <= high <= 1


def test_coverage_is_near_nominal_on_simulated_data():
    """95% intervals of acc1 over 300 simulated test sets cover the true rate about 95% of the time."""
    rng = np.random.default_rng(0)
    true_rate, n, trials, covered = 0.7, 200, 300, 0
    for trial in range(trials):
        hits = rng.random(n) < true_rate
        samples = pd.DataFrame({"key": range(n), "label": 0, "rank": np.where(hits, 1, 2)})
        low, high = bootstrap.intervals(CLS, samples, ("acc1", "mean_per_class_recall"), resamples=400, seed=trial)["acc1"]
        covered += low <= true_rate <= high
    assert 0.93 <= covered / trials <= 0.97  # binomial sd at 300 trials is about 1.3 points; 90% or 99% intervals fall outside


def test_paired_difference_is_zero_for_identical_runs_and_detects_a_shift():
    rng = np.random.default_rng(3)
    base = classification_samples(rng, n=300)
    same = bootstrap.paired_difference_intervals(CLS, base, base, METRICS["zeroshot_classification"], resamples=200)
    assert same["acc1"] == [0.0, 0.0]
    worse = base.copy()
    worse.loc[worse.index[:90], "rank"] = 9  # 90 of 300 images lose their hit (if they had one)
    diff = bootstrap.paired_difference_intervals(CLS, worse.sample(frac=1, random_state=1), base,
                                                 METRICS["zeroshot_classification"], resamples=500)
    assert diff["acc1"][1] < 0  # the whole interval is below zero


def test_paired_needs_the_same_queries():
    rng = np.random.default_rng(4)
    a = classification_samples(rng, n=30)
    with pytest.raises(ValueError, match="same queries"):
        bootstrap.paired_difference_intervals(CLS, a, a.iloc[:-1], METRICS["zeroshot_classification"])


def _reference_percentiles(values: list[dict[str, float]]) -> dict[str, list[float]]:
    return {name: [float(np.percentile([v[name] for v in values], 2.5)), float(np.percentile([v[name] for v in values], 97.5))]
            for name in values[0]}


def test_intervals_equal_percentiles_of_naively_recomputed_resamples():
    """The endpoints themselves: the 2.5th and 97.5th percentiles of the statistic over the seeded index draws."""
    rng = np.random.default_rng(11)
    cls, ret = classification_samples(rng, n=80), retrieval_samples(rng, n=30)
    resamples = 100  # one block of draws, so the reference draws the same indices in one call
    assert resamples <= bootstrap._BLOCK
    idx = np.random.default_rng(4).integers(0, len(cls), size=(resamples, len(cls)))
    expected = _reference_percentiles([naive_classification(cls, row, 7) for row in idx])
    got = bootstrap.intervals(CLS, cls, METRICS["zeroshot_classification"], resamples=resamples, seed=4)
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name] == pytest.approx(expected[name]), name
    n_images = int((ret["query"] == "image").sum())
    idx = np.random.default_rng(4).integers(0, n_images, size=(resamples, n_images))
    expected = _reference_percentiles([naive_retrieval(ret, row) for row in idx])
    got = bootstrap.intervals(RET, ret, METRICS["retrieval"], resamples=resamples, seed=4)
    for name in expected:
        assert got[name] == pytest.approx(expected[name]), name


def test_paired_intervals_equal_percentiles_of_naive_differences_on_shuffled_tables():
    """candidate − baseline on the same resampled images, whatever the row order of each table."""
    rng = np.random.default_rng(12)
    base = retrieval_samples(rng, n=30)
    cand = base.copy()
    cand["rank"] = np.maximum(1, cand["rank"] + rng.integers(-3, 4, len(cand)))
    resamples = 100  # one block of draws (see above)
    paired = bootstrap.paired_difference_intervals(RET, cand.sample(frac=1, random_state=2), base.sample(frac=1, random_state=3),
                                                   METRICS["retrieval"], resamples=resamples, seed=9)
    order = ["query", "key", "caption_index"]
    cand_sorted = cand.sort_values(order).reset_index(drop=True)
    base_sorted = base.sort_values(order).reset_index(drop=True)
    n_images = int((base["query"] == "image").sum())
    idx = np.random.default_rng(9).integers(0, n_images, size=(resamples, n_images))
    diffs = []
    for row in idx:
        c, b = naive_retrieval(cand_sorted, row), naive_retrieval(base_sorted, row)
        diffs.append({name: c[name] - b[name] for name in c})
    expected = _reference_percentiles(diffs)
    for name in expected:
        assert paired[name] == pytest.approx(expected[name], abs=1e-12), name
    assert any(low != high for low, high in paired.values())  # the runs differ, so the check has something to see


def _with_identity(samples: pd.DataFrame, rng) -> pd.DataFrame:
    """Add the `row` and `image_sha256` columns the evaluators write (one image per key here)."""
    keys = sorted(set(samples["key"]))
    hashes = {k: f"{rng.integers(0, 2**62):016x}" * 4 for k in keys}
    rows = {k: i for i, k in enumerate(keys)}
    return samples.assign(row=samples["key"].map(rows), image_sha256=samples["key"].map(hashes))


@pytest.mark.parametrize("kind", ["zeroshot_classification", "retrieval"])
def test_the_same_rows_in_another_order_and_with_other_keys_give_the_same_intervals(kind):
    """Issue #13 item 7: the same data in two layouts (row order, keys) gave different intervals."""
    rng = np.random.default_rng(21)
    table = classification_samples(rng, n=70) if kind == "zeroshot_classification" else retrieval_samples(rng, n=40)
    table = _with_identity(table, rng)
    other = table.sample(frac=1, random_state=5).reset_index(drop=True)
    renamed = {k: f"shard9/{i}" for i, k in enumerate(sorted(set(other["key"]), reverse=True))}
    other = other.assign(key=other["key"].map(renamed), row=other["row"].map(lambda r: 1000 - r))
    a = bootstrap.intervals(get_kind(kind), table, METRICS[kind], resamples=300)
    b = bootstrap.intervals(get_kind(kind), other, METRICS[kind], resamples=300)
    assert a == b


def test_shards_reusing_keys_keep_their_images_apart():
    """Two shards that both name their rows s0000000...: grouped by key, two images' captions became one unit."""
    rng = np.random.default_rng(22)
    table = _with_identity(retrieval_samples(rng, n=30), rng)
    clashing = table.assign(key=table["key"].map(lambda k: f"k{int(k[1:]) % 15:03d}"))  # rows 0 and 15 share a key ...
    assert clashing["key"].nunique() == 15 and clashing["row"].nunique() == 30
    assert bootstrap.intervals(RET, clashing, METRICS["retrieval"], resamples=300) == bootstrap.intervals(RET, table, METRICS["retrieval"], resamples=300)
    n_units, _ = RET.statistic(clashing, METRICS[RET.type])
    assert n_units == 30


def test_paired_intervals_pair_by_image_content_across_layouts():
    rng = np.random.default_rng(23)
    base = _with_identity(retrieval_samples(rng, n=30), rng)
    cand = base.assign(rank=np.maximum(1, base["rank"] + rng.integers(-3, 4, len(base))))
    moved = cand.sample(frac=1, random_state=1).assign(key=lambda t: "other/" + t["key"], row=lambda t: t["row"] + 100)
    assert bootstrap.paired_difference_intervals(RET, moved, base, METRICS["retrieval"], resamples=200) == \
        bootstrap.paired_difference_intervals(RET, cand, base, METRICS["retrieval"], resamples=200)
