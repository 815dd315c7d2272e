"""Find and read results of every source: our own runs, published reference rows, CLIP_benchmark JSON.

Everything becomes a `Record`: one (model, task) result with its metrics as
fractions in [0, 1]. Our own results keep their `TaskResult` (and the path of
the JSON, so the per-sample parquet beside it can be found); imported rows
carry only what their source knows, and are labelled with that source.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from vtde_bench.errors import UserError
from vtde_bench.kinds import Kind, kind_of_clip_benchmark_task, kind_of_metrics
from vtde_bench.results import TaskResult, samples_path

OURS, PUBLISHED, CLIP_BENCHMARK = "vtde-bench", "published", "clip_benchmark"

# CLIP_benchmark's dataset names (after any `wds/` and `vtab/` prefix) → our task names.
CLIP_BENCHMARK_TASKS = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet1k": "imagenet1k",
                        "flickr30k": "flickr30k", "mscoco_captions": "mscoco"}

COLUMNS = ["model", "model_path", "task", "task_type", "task_version", "metric", "value", "low", "high", "main",
           "limited", "dataset_fingerprint", "weights_fingerprint", "source", "path"]


@dataclass(frozen=True)
class Record:
    """One (model, task) result from any source. Metric values and intervals are fractions."""

    model: str  # our runs: the slug; imported rows: a label naming the source
    task: str
    task_type: str
    main_metric: str
    metrics: dict[str, float]
    source: str = OURS
    model_path: str | None = None
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    task_version: int | None = None
    limit: int | None = None
    dataset_fingerprint: str | None = None
    weights_fingerprint: str | None = None
    path: Path | None = None  # the result JSON (None for published rows)
    result: TaskResult | None = field(default=None, repr=False, compare=False)

    @property
    def limited(self) -> bool:
        return self.limit is not None

    @property
    def samples_path(self) -> Path | None:
        """The per-sample parquet beside our own result JSON."""
        if self.source != OURS or self.path is None:
            return None
        return samples_path(self.path)


def from_task_result(result: TaskResult, path: Path | None = None) -> Record:
    """A record of one of our own results."""
    return Record(
        model=result.model["slug"], model_path=result.model.get("path"), task=result.task_name,
        task_type=result.task["type"], main_metric=result.task["main_metric"], metrics=dict(result.metrics),
        intervals={k: (float(v[0]), float(v[1])) for k, v in (result.intervals or {}).items()},
        task_version=result.task.get("version"), limit=result.run.get("limit"),
        dataset_fingerprint=result.dataset.get("fingerprint"), weights_fingerprint=result.model.get("weights_fingerprint"),
        source=OURS, path=path, result=result,
    )


def _kind_of(metrics: dict[str, float], where: str) -> Kind:
    # Published rows name no task type; the metrics they report tell it.
    kind = kind_of_metrics(metrics)
    if kind is None:
        raise UserError(f"{where}: metrics {', '.join(metrics)} are not those of one kind of evaluation; fix the file")
    return kind


def published_records(rows: Sequence[dict[str, Any]] | None = None, *, path: Path | None = None) -> list[Record]:
    """Records of the published reference rows (default: the ones shipped in `vtde_bench/reference`)."""
    if rows is None:
        from vtde_bench.reference import published_rows

        rows = published_rows()
    records = []
    for row in rows:
        for task, metrics in row["metrics"].items():
            kind = _kind_of(metrics, f"published row {row['model']} on {task}")
            records.append(Record(model=row.get("label") or f"{row['model']} (published)", model_path=row["model"], task=task,
                                  task_type=kind.type, main_metric=kind.default_main_metric, metrics=dict(metrics),
                                  source=PUBLISHED, path=path))
    return records


def clip_benchmark_record(data: dict[str, Any], path: Path) -> Record:
    """A record of one CLIP_benchmark result JSON (written by its `cli.py`: dataset, model, pretrained, task, metrics, language).

    The kind whose `clip_benchmark_task` is the file's `task` names its metrics our way.
    """
    name = str(data["dataset"])
    for prefix in ("wds/", "vtab/"):
        name = name.removeprefix(prefix)
    task = CLIP_BENCHMARK_TASKS.get(name, name.replace("/", "_"))
    kind = kind_of_clip_benchmark_task(data["task"])
    if kind is None:
        raise UserError(f"{path}: CLIP_benchmark task {data['task']!r} cannot be imported (no kind of evaluation reads it)")
    # CLIP_benchmark writes acc5 = NaN with fewer than five classes.
    numbers = {k: float(v) for k, v in data["metrics"].items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)}
    metrics = kind.import_metrics(numbers)
    language = data.get("language") or "en"
    label = f"{data['model']} / {data['pretrained']}{'' if language == 'en' else f' [{language}]'} (CLIP_benchmark)"
    return Record(model=label, model_path=f"{data['model']},{data['pretrained']}", task=task, task_type=kind.type,
                  main_metric=kind.default_main_metric, metrics=metrics, source=CLIP_BENCHMARK, path=path)


def _kind(data: Any) -> str | None:
    """Which source wrote this JSON, or None when it is no result at all."""
    if not isinstance(data, dict):
        return None
    if "schema_version" in data and {"task", "model", "metrics"} <= set(data):
        return OURS
    if {"dataset", "model", "pretrained", "task", "metrics"} <= set(data):
        return CLIP_BENCHMARK
    if isinstance(data.get("rows"), list) and str(data.get("schema", "")).startswith("vtde-bench published"):
        return PUBLISHED
    return None


def read_records(path: Path, *, explicit: bool = True) -> list[Record]:
    """The records in one JSON file. A file named explicitly must be a result; one found in a folder may be anything.

    Raises:
        UserError: the file is unreadable, not JSON, or (named explicitly) not a result of a known source.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no such file or folder: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is not a readable JSON file ({e}); delete it or rerun") from None
    kind = _kind(data)
    if kind == OURS:
        return [from_task_result(TaskResult.from_dict(data, where=str(path)), path)]
    if kind == CLIP_BENCHMARK:
        return [clip_benchmark_record(data, path)]
    if kind == PUBLISHED:
        return published_records(data["rows"], path=path)
    if explicit:
        raise UserError(f"{path} is not a result of vtde-bench, CLIP_benchmark or a published-rows file")
    return []


def result_files(paths: Iterable[str | Path]) -> list[tuple[Path, bool]]:
    """(JSON file, named explicitly) for each path: files as given, folders searched recursively (hidden files skipped).

    Raises:
        UserError: a path does not exist, or a file given is not JSON.
    """
    found: dict[Path, bool] = {}
    for item in paths:
        path = Path(item)
        if path.is_dir():
            for file in sorted(path.rglob("*.json")):
                if file.is_file() and not any(part.startswith(".") for part in file.relative_to(path).parts):
                    found.setdefault(file.resolve(), False)
        elif path.is_file():
            if path.suffix != ".json":
                raise UserError(f"{path} is not a result JSON (per-sample .parquet files are found beside their JSON)")
            found[path.resolve()] = True
        else:
            raise UserError(f"no such file or folder: {path}")
    return list(found.items())


def load_records(paths: Iterable[str | Path] | str | Path, *, published: bool = False) -> list[Record]:
    """Every record under `paths` (folders or files), plus the shipped published rows when `published`."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    records = [r for file, explicit in result_files(paths) for r in read_records(file, explicit=explicit)]
    return records + (published_records() if published else [])


def read_task_results(paths: Iterable[str | Path] | str | Path) -> list[TaskResult]:
    """Our own results under `paths`, as `TaskResult` objects (imported rows are left out)."""
    return [r.result for r in load_records(paths) if r.result is not None]


def records_frame(records: Sequence[Record]):
    """One row per (record, metric): the `COLUMNS`, values and intervals as fractions (NaN when none)."""
    import pandas as pd

    nan = float("nan")
    rows = [
        {"model": r.model, "model_path": r.model_path, "task": r.task, "task_type": r.task_type,
         "task_version": r.task_version, "metric": name, "value": value,
         "low": r.intervals.get(name, (nan, nan))[0], "high": r.intervals.get(name, (nan, nan))[1],
         "main": name == r.main_metric, "limited": r.limited, "dataset_fingerprint": r.dataset_fingerprint,
         "weights_fingerprint": r.weights_fingerprint, "source": r.source, "path": None if r.path is None else str(r.path)}
        for r in records
        for name, value in r.metrics.items()
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def load_results(paths: Iterable[str | Path] | str | Path, *, published: bool = False):
    """Results under `paths` (folders searched recursively, or files) as a pandas DataFrame.

    One row per (model, task, metric) with the columns `COLUMNS`: `value`, `low` and `high` are
    fractions (the 95% bootstrap interval, NaN when the result has none); `main` marks the task's
    main metric; `limited` a run made with `--limit`; `source` is "vtde-bench", "published" or
    "clip_benchmark". With `published=True` the shipped published reference rows are added.

    Raises:
        UserError: a path does not exist, or a file named is not a result.
    """
    return records_frame(load_records(paths, published=published))
