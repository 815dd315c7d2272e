"""Where results live on disk, written atomically, read back, and reused.

One JSON per (model, task) at `<output_dir>/<model slug>/<task>.json`, and
beside it `<task>.samples.parquet` with one row per query. The per-sample
file is written first and the JSON last, each through a temporary file and a
rename, so a JSON on disk always describes a complete run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vtde_bench.errors import UserError
from vtde_bench.files import atomic_write
from vtde_bench.results.records import TaskResult


def write_result(result: TaskResult, output_dir: str | Path) -> Path:
    """Write the per-sample file, then the JSON, each atomically, under `output_dir`. Returns the JSON path."""
    json_path = result_path(output_dir, result.model.slug, result.task.name)
    parquet_path = samples_path(json_path)
    # Serialise first: a result that cannot be written as JSON leaves no files at all.
    text = json.dumps(result.to_json(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    if result.samples is not None:
        atomic_write(parquet_path, lambda f: result.samples.to_parquet(f, index=False))
    atomic_write(json_path, lambda f: f.write(text.encode("utf-8")))
    return json_path


def read_json(path: str | Path) -> Any:
    """A JSON file's contents.

    Raises:
        UserError: the file is missing, unreadable or not JSON.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no such file or folder: {path}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}); delete it or rerun") from None
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror or e})") from None


def read_result(path: str | Path) -> TaskResult:
    """Read one result JSON (of any schema version this vtde-bench knows).

    Raises:
        UserError: the file is missing, not JSON, or not a result this version reads.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a vtde-bench result")
    return TaskResult.from_json(data, where=str(path), path=path)


def find_existing(json_path: Path, *, weights: str, dataset: str, profile: str) -> TaskResult | None:
    """The result already on disk for the same weights, data and profile fingerprints, if it is complete.

    A result written before results held a profile is never reused: nothing says what made it.
    """
    if not json_path.is_file():
        return None
    try:
        old = read_result(json_path)
    except UserError:
        return None  # a damaged result is recomputed, never trusted
    same = (
        old.model.weights_fingerprint == weights
        and old.dataset.fingerprint == dataset
        and old.run.profile is not None and old.run.profile.fingerprint == profile
    )
    return old if same and samples_path(json_path).is_file() else None


def result_path(output_dir: str | Path, slug: str, task_name: str) -> Path:
    """Where a model's result for a task lives: `<output_dir>/<model slug>/<task>.json`."""
    return Path(output_dir) / slug / f"{task_name}.json"


def samples_path(json_path: Path) -> Path:
    """The per-sample parquet beside a result JSON: `<task>.json` → `<task>.samples.parquet`."""
    return json_path.with_name(json_path.name.removesuffix(".json") + ".samples.parquet")
