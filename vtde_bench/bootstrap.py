"""Percentile-bootstrap confidence intervals, computed from a result's per-sample table.

The unit resampled is the image: for classification each image's rank; for
retrieval each image together with all its captions, so an image's captions
stay together as they are not independent. Ranks are those of the full run
(the gallery is not recomputed per resample), the usual query bootstrap.

Resamples are drawn in blocks, so memory stays at ``block x images`` however
many resamples are asked for.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

_BLOCK = 100
LEVEL = 0.95


def _resample_stats(
    n_units: int, statistic: Callable[[np.ndarray], dict[str, np.ndarray]], *, resamples: int, seed: int
) -> dict[str, np.ndarray]:
    """Evaluate `statistic` on `resamples` index draws; it maps (B, n_units) indices to {name: (B,) values}."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {}
    for start in range(0, resamples, _BLOCK):
        block = min(_BLOCK, resamples - start)
        indices = rng.integers(0, n_units, size=(block, n_units))
        for name, values in statistic(indices).items():
            out.setdefault(name, []).append(values)
    return {name: np.concatenate(chunks) for name, chunks in out.items()}


def _percentiles(stats: dict[str, np.ndarray]) -> dict[str, list[float]]:
    tail = (1 - LEVEL) / 2 * 100
    return {name: [float(np.nanpercentile(v, tail)), float(np.nanpercentile(v, 100 - tail))] for name, v in stats.items()}


def classification_statistic(ranks: np.ndarray, labels: np.ndarray, num_classes: int) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """Per resample: acc1, acc5 (with 5+ classes) and mean per-class recall (over classes present in the resample)."""
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    top1 = (ranks <= 1).astype(np.float64)
    top5 = (ranks <= 5).astype(np.float64)

    def statistic(idx: np.ndarray) -> dict[str, np.ndarray]:
        stats = {"acc1": top1[idx].mean(1)}
        if num_classes >= 5:
            stats["acc5"] = top5[idx].mean(1)
        rows = np.repeat(np.arange(idx.shape[0]), idx.shape[1])
        cls = labels[idx].ravel()
        hits = np.zeros((idx.shape[0], num_classes))
        counts = np.zeros((idx.shape[0], num_classes))
        np.add.at(hits, (rows, cls), top1[idx].ravel())
        np.add.at(counts, (rows, cls), 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            stats["mean_per_class_recall"] = np.nanmean(np.where(counts > 0, hits / counts, np.nan), axis=1)
        return stats

    return statistic


def retrieval_statistic(image_ranks: np.ndarray, caption_ranks: list[np.ndarray]) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """Per resample of images: recall@{1,5,10} both ways and mean R@1; `caption_ranks[i]` are image i's captions' ranks."""
    n_captions = np.array([len(r) for r in caption_ranks], dtype=np.float64)
    caption_hits = {k: np.array([(r <= k).sum() for r in caption_ranks], dtype=np.float64) for k in (1, 5, 10)}

    def statistic(idx: np.ndarray) -> dict[str, np.ndarray]:
        stats = {}
        for k in (1, 5, 10):
            stats[f"image_to_text_recall@{k}"] = (image_ranks[idx] <= k).mean(1)
        for k in (1, 5, 10):
            stats[f"text_to_image_recall@{k}"] = caption_hits[k][idx].sum(1) / n_captions[idx].sum(1)
        stats["mean_recall@1"] = (stats["image_to_text_recall@1"] + stats["text_to_image_recall@1"]) / 2
        return stats

    return statistic


def _in_content_order(samples: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Rows sorted by image content, so that the resamples do not depend on the layout's row order.

    Per-sample files written before they held `image_sha256` keep their row order.
    """
    if "image_sha256" not in samples.columns:
        return samples
    return samples.sort_values(["image_sha256", *columns], kind="stable").reset_index(drop=True)


def _unit(samples: pd.DataFrame) -> str:
    """The column naming each query's image: its row (unique), or in older files its key."""
    return "row" if "row" in samples.columns else "key"


def statistic_for(task_type: str, samples: pd.DataFrame, num_classes: int | None = None):
    """(number of images, statistic) for a per-sample table written by the evaluators.

    The unit resampled is the image, by its row (two rows sharing a key stay two units), taken in
    image-content order: the same data in any layout gives the same intervals.
    """
    if task_type == "zeroshot_classification":
        samples = _in_content_order(samples, ["label"])
        labels = samples["label"].to_numpy()
        return len(samples), classification_statistic(samples["rank"].to_numpy(), labels, num_classes or int(labels.max()) + 1)
    unit = _unit(samples)
    images = _in_content_order(samples[samples["query"] == "image"], [unit])
    captions = samples[samples["query"] == "text"]
    by_unit = {u: group["rank"].to_numpy() for u, group in captions.groupby(unit, sort=False)}
    caption_ranks = [by_unit[u] for u in images[unit]]
    return len(images), retrieval_statistic(images["rank"].to_numpy(), caption_ranks)


def intervals(
    task_type: str, samples: pd.DataFrame, *, num_classes: int | None = None, resamples: int = 1000, seed: int = 0
) -> dict[str, list[float]]:
    """95% percentile-bootstrap intervals of every metric, as [low, high] fractions."""
    n_units, statistic = statistic_for(task_type, samples, num_classes)
    return _percentiles(_resample_stats(n_units, statistic, resamples=resamples, seed=seed))


def paired_difference_intervals(
    task_type: str, candidate: pd.DataFrame, baseline: pd.DataFrame, *, num_classes: int | None = None,
    resamples: int = 1000, seed: int = 0,
) -> dict[str, list[float]]:
    """Intervals of candidate − baseline, resampling the same images in both.

    Raises:
        ValueError: the two tables do not hold the same queries (compare runs on one dataset fingerprint).
    """
    by_content = "image_sha256" in candidate.columns and "image_sha256" in baseline.columns
    if not by_content:  # a per-sample file written before tables held image hashes: pair by key, as then
        candidate, baseline = (t.drop(columns=["image_sha256"], errors="ignore") for t in (candidate, baseline))
    # Queries pair by image content, so the same data in two layouts (other keys, other row order) pairs.
    identity = ["image_sha256" if by_content else "key"]
    identity += ["label"] if task_type == "zeroshot_classification" else ["query", "caption_index"]
    candidate = candidate.sort_values(identity, kind="stable").reset_index(drop=True)
    baseline = baseline.sort_values(identity, kind="stable").reset_index(drop=True)
    if not candidate[identity].equals(baseline[identity]):
        raise ValueError("paired bootstrap needs the same queries in both per-sample tables")
    n_c, stat_c = statistic_for(task_type, candidate, num_classes)
    _, stat_b = statistic_for(task_type, baseline, num_classes)

    def difference(idx: np.ndarray) -> dict[str, np.ndarray]:
        c, b = stat_c(idx), stat_b(idx)
        return {name: c[name] - b[name] for name in c}

    return _percentiles(_resample_stats(n_c, difference, resamples=resamples, seed=seed))
