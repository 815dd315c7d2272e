"""The one DataFrame of results: a row per (model, task, metric), whatever the results' sources.

`Results.to_dataframe()`, `load_results()` and the leaderboard's long export all come from
`results_frame`, so they have the same columns.
"""

from __future__ import annotations

from typing import Iterable

from vtde_bench.results.records import ScoreRow

COLUMNS = ["model", "model_path", "task", "task_type", "task_version", "metric", "value", "low", "high", "main",
           "limited", "dataset_fingerprint", "weights_fingerprint", "source", "path"]


def results_frame(rows: Iterable[ScoreRow]):
    """One row per (result, metric) with the `COLUMNS`: `value`, `low` and `high` are fractions (the 95%
    bootstrap interval, NaN when the result has none); `main` marks the task's main metric; `limited` a
    run made with `--limit`; `source` is "vtde-bench" or the importer's name ("published", "clip_benchmark")."""
    import pandas as pd

    nan = float("nan")
    records = [
        {"model": r.model_name, "model_path": r.model_path, "task": r.task_name, "task_type": r.task_type,
         "task_version": r.task_version, "metric": name, "value": value,
         "low": r.intervals.get(name, (nan, nan))[0], "high": r.intervals.get(name, (nan, nan))[1],
         "main": name == r.main_metric, "limited": r.limited, "dataset_fingerprint": r.dataset_fingerprint,
         "weights_fingerprint": r.weights_fingerprint, "source": r.source, "path": None if r.path is None else str(r.path)}
        for r in rows
        for name, value in r.metrics.items()
    ]
    return pd.DataFrame(records, columns=COLUMNS)


def load_results(paths, *, published: bool = False):
    """Results under `paths` (folders searched recursively, or files) as the `results_frame` DataFrame.
    With `published=True` the shipped published reference rows are added.

    Raises:
        UserError: a path does not exist, or a file named is not a result.
    """
    from vtde_bench.results.importers import load_rows

    return results_frame(load_rows(paths, published=published))
