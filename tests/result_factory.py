"""Synthetic results for leaderboard and compare tests: TaskResult files written exactly as `run` writes them.

Real runs with tiny models show the pipeline end to end; these make cases of a known size
(a regression of so many points, a limited run, another dataset fingerprint) without a model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vtde_bench import results
from vtde_bench.results import DatasetRecord, ModelRecord, RunRecord, TaskRecord, TaskResult

FINGERPRINT = "d" * 64


def classification_samples(correct: np.ndarray, *, num_classes: int = 10, seed: int = 0) -> pd.DataFrame:
    """A per-sample table like the classification evaluator's: rank 1 where `correct`, else rank 2..num_classes."""
    rng = np.random.default_rng(seed)
    n = len(correct)
    labels = np.arange(n) % num_classes
    ranks = np.where(correct, 1, rng.integers(2, num_classes + 1, size=n))
    top5 = [[int(label)] + [int((label + j) % num_classes) for j in range(1, 5)] for label in labels]
    return pd.DataFrame({"key": [f"{i:05d}" for i in range(n)], "label": labels, "rank": ranks, "top5": top5})


def classification_metrics(samples: pd.DataFrame, num_classes: int) -> dict[str, float]:
    top1 = samples["rank"] <= 1
    return {"acc1": float(top1.mean()), "acc5": float((samples["rank"] <= 5).mean()),
            "mean_per_class_recall": float(top1.groupby(samples["label"]).mean().mean())}


def write_result(
    out: Path, *, slug: str, task: str, metrics: dict[str, float] | None = None, samples: pd.DataFrame | None = None,
    kind: str = "zeroshot_classification", main_metric: str | None = None, version: int = 1,
    fingerprint: str = FINGERPRINT, limit: int | None = None, intervals: dict[str, list[float]] | None = None,
    num_classes: int = 10,
) -> Path:
    """Write one result (and its per-sample file when `samples` is given) under `out/<slug>/`; returns the JSON path."""
    if metrics is None:
        assert samples is not None
        metrics = classification_metrics(samples, num_classes)
    main_metric = main_metric or ("acc1" if kind == "zeroshot_classification" else "mean_recall@1")
    per_class = {f"class{i}": 0.5 for i in range(num_classes)} if kind == "zeroshot_classification" else None
    result = TaskResult(
        task=TaskRecord(name=task, version=version, type=kind, main_metric=main_metric),
        model=ModelRecord(path=f"/models/{slug}", slug=slug, weights_fingerprint=slug.ljust(64, "0"), num_parameters=1,
                          embedding_dim=16, model_type="synthetic"),
        dataset=DatasetRecord(source="synthetic", split="test", layout="parquet", location="-", fingerprint=fingerprint,
                              num_images=0 if samples is None else len(samples), num_texts=num_classes),
        metrics=metrics, main_score=metrics[main_metric], per_class_recall=per_class,
        intervals={k: tuple(v) for k, v in (intervals or {}).items()},
        run=RunRecord(precision="fp32", device="cpu", batch_size=64, workers=0, limit=limit, date="2026-01-01T00:00:00+00:00"),
        samples=samples,
    )
    return results.write_result(result, out)
