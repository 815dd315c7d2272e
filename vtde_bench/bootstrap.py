"""Percentile-bootstrap confidence intervals, computed from a result's per-sample table.

A generic engine: the task's kind turns its per-sample table into a statistic of resampled
units (`Kind.statistic`). The unit is the image: for classification each image's rank; for
retrieval each image together with all its captions, so an image's captions stay together as
they are not independent. Ranks are those of the full run (the gallery is not recomputed per
resample), the usual query bootstrap.

Resamples are drawn in blocks, so memory stays at ``block x images`` however
many resamples are asked for.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import numpy as np
import pandas as pd

_BLOCK = 100
LEVEL = 0.95


class Resampled(Protocol):
    """What the engine asks of a kind (a `vtde_bench.kinds.Kind`)."""

    identity: tuple[str, ...]  # per-sample columns that, with the image, tell one query from another

    def statistic(self, samples: pd.DataFrame, metrics: tuple[str, ...]) -> tuple[int, Callable[[np.ndarray], dict[str, np.ndarray]]]:
        """(number of units, a map from (B, n) unit indices to {metric: (B,) values})."""


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


def in_content_order(samples: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Rows sorted by image content (then `columns`), so that resamples do not depend on the layout's row order.

    Per-sample files written before they held `image_sha256` keep their row order.
    """
    if "image_sha256" not in samples.columns:
        return samples
    return samples.sort_values(["image_sha256", *columns], kind="stable").reset_index(drop=True)


def image_unit(samples: pd.DataFrame) -> str:
    """The column naming each query's image: its row (unique: two shards may reuse keys), or in older files its key."""
    return "row" if "row" in samples.columns else "key"


def intervals(kind: Resampled, samples: pd.DataFrame, metrics: Sequence[str], *, resamples: int = 1000,
              seed: int = 0) -> dict[str, list[float]]:
    """95% percentile-bootstrap intervals of `metrics`, as [low, high] fractions, from a per-sample table of `kind`."""
    n_units, statistic = kind.statistic(samples, tuple(metrics))
    stats = _resample_stats(n_units, statistic, resamples=resamples, seed=seed)
    return _percentiles({name: values for name, values in stats.items() if name in metrics})


def paired_difference_intervals(
    kind: Resampled, candidate: pd.DataFrame, baseline: pd.DataFrame, metrics: Sequence[str], *,
    resamples: int = 1000, seed: int = 0,
) -> dict[str, list[float]]:
    """Intervals of candidate − baseline, resampling the same images in both.

    Queries pair by image content (`image_sha256`), so the same data in two layouts (other keys, other
    row order) pairs; per-sample files written before they held image hashes pair by key.

    Raises:
        ValueError: the two tables do not hold the same queries (compare runs on one dataset fingerprint).
    """
    by_content = "image_sha256" in candidate.columns and "image_sha256" in baseline.columns
    if not by_content:
        candidate, baseline = (t.drop(columns=["image_sha256"], errors="ignore") for t in (candidate, baseline))
    identity = ["image_sha256" if by_content else "key", *kind.identity]
    candidate = candidate.sort_values(identity, kind="stable").reset_index(drop=True)
    baseline = baseline.sort_values(identity, kind="stable").reset_index(drop=True)
    if not candidate[identity].equals(baseline[identity]):
        raise ValueError("paired bootstrap needs the same queries in both per-sample tables")
    n_c, stat_c = kind.statistic(candidate, tuple(metrics))
    _, stat_b = kind.statistic(baseline, tuple(metrics))

    def difference(idx: np.ndarray) -> dict[str, np.ndarray]:
        c, b = stat_c(idx), stat_b(idx)
        return {name: c[name] - b[name] for name in c if name in metrics}

    return _percentiles(_resample_stats(n_c, difference, resamples=resamples, seed=seed))
