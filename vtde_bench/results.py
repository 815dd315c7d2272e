"""Result records: typed, versioned, written atomically.

One JSON per (model, task) at `<output_dir>/<model slug>/<task>.json`, and
beside it `<task>.samples.parquet` with one row per query. The per-sample
file is written first and the JSON last, each through a temporary file and a
rename, so a JSON on disk always describes a complete run.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from vtde_bench.errors import UserError

SCHEMA_VERSION = 1


@dataclass
class TaskResult:
    """The outcome of one task on one model. Metric values are fractions in [0, 1]."""

    task: dict[str, Any]  # name, version, type, main_metric, card
    model: dict[str, Any]  # path, revision, resolved_commit, weights_fingerprint, num_parameters, embedding_dim, slug
    dataset: dict[str, Any]  # source, revision, split, layout, location, fingerprint, num_images, num_texts, num_bad_images
    metrics: dict[str, float]
    main_score: float
    run: dict[str, Any]  # precision, device, batch_size, workers, limit, skip_bad_images, date, timings, versions
    per_class_recall: dict[str, float | None] | None = None
    intervals: dict[str, list[float]] | None = None  # 95% bootstrap interval of each metric, [low, high] fractions
    warnings: list[str] = field(default_factory=list)  # what may make the numbers mean less than they seem
    schema_version: int = SCHEMA_VERSION
    samples: Any = field(default=None, repr=False, compare=False)  # pandas.DataFrame, not in the JSON

    @property
    def task_name(self) -> str:
        return self.task["name"]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("samples")
        return {"schema_version": data.pop("schema_version"), **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "result") -> "TaskResult":
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise UserError(f"{where}: schema_version {version!r} is not {SCHEMA_VERSION}; rerun the evaluation")
        known = {"task", "model", "dataset", "metrics", "main_score", "run", "per_class_recall", "intervals", "warnings",
                 "schema_version"}
        missing = {"task", "model", "dataset", "metrics", "main_score", "run"} - set(data)
        if missing:
            raise UserError(f"{where}: not a vtde-bench result (missing {', '.join(sorted(missing))})")
        problem = _damage(data)
        if problem:
            raise UserError(f"{where}: damaged result ({problem}); rerun the evaluation with --overwrite")
        return cls(**{k: v for k, v in data.items() if k in known})

    def paths(self, output_dir: str | Path) -> tuple[Path, Path]:
        """(result JSON, per-sample parquet) for this result under `output_dir`."""
        json_path = result_path(output_dir, self.model["slug"], self.task_name)
        return json_path, samples_path(json_path)

    def write(self, output_dir: str | Path) -> Path:
        """Write the per-sample file, then the JSON, each atomically. Returns the JSON path."""
        json_path, samples_path = self.paths(output_dir)
        # Serialise first: a result that cannot be written as JSON leaves no files at all.
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        if self.samples is not None:
            atomic_write(samples_path, lambda f: self.samples.to_parquet(f, index=False))
        atomic_write(json_path, lambda f: f.write(text.encode("utf-8")))
        return json_path


def _damage(data: dict[str, Any]) -> str | None:
    """What makes a parsed result JSON unusable (a hand edit, a bad merge), or None when its shape is sound."""

    def fraction(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and 0.0 <= x <= 1.0

    for name in ("task", "model", "dataset", "metrics", "run"):
        if not isinstance(data[name], dict):
            return f"'{name}' is {type(data[name]).__name__}, not an object"
    for section, key in (("task", "name"), ("task", "type"), ("task", "main_metric"), ("model", "slug")):
        if not isinstance(data[section].get(key), str):
            return f"'{section}.{key}' is missing or not text"
    bad = [k for k, v in data["metrics"].items() if not fraction(v)]
    if bad:
        return f"metric '{bad[0]}' is {data['metrics'][bad[0]]!r}, not a fraction in [0, 1]"
    if data["main_score"] != data["metrics"].get(data["task"]["main_metric"]):
        return "main_score is not the value of the main metric"
    intervals = data.get("intervals")
    if intervals is not None and not (
        isinstance(intervals, dict)
        and all(isinstance(v, list) and len(v) == 2 and all(map(fraction, v)) for v in intervals.values())
    ):
        return "'intervals' is not a [low, high] pair of fractions per metric"
    if data.get("per_class_recall") is not None and not isinstance(data["per_class_recall"], dict):
        return "'per_class_recall' is not an object"
    if not (isinstance(data.get("warnings", []), list) and all(isinstance(w, str) for w in data.get("warnings", []))):
        return "'warnings' is not a list of text"
    return None


def atomic_write(path: Path, write: Callable[[Any], Any], *, where: str = "--output-dir") -> None:
    """Write a file through a temporary sibling and a rename: readers see the old file or the new, never half.

    `where` names, in the error message, the option that chooses the folder.

    Raises:
        UserError: the folder cannot be created or written (names the path).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise UserError(f"cannot write {path} ({e.strerror or e}); choose another {where}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise UserError(f"cannot write {path} ({e.strerror or e}); free space or choose another {where}") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_result(path: str | Path) -> TaskResult:
    """Read one result JSON.

    Raises:
        UserError: the file is missing, not JSON, or not a result of this schema.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no result file at {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}); delete it and rerun") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a vtde-bench result")
    return TaskResult.from_dict(data, where=str(path))


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
    recorded = old.run.get("profile")
    same = (
        old.model.get("weights_fingerprint") == weights
        and old.dataset.get("fingerprint") == dataset
        and isinstance(recorded, dict) and recorded.get("fingerprint") == profile
    )
    return old if same and samples_path(json_path).is_file() else None


def result_path(output_dir: str | Path, slug: str, task_name: str) -> Path:
    """Where a model's result for a task lives: `<output_dir>/<model slug>/<task>.json`."""
    return Path(output_dir) / slug / f"{task_name}.json"


def samples_path(json_path: Path) -> Path:
    """The per-sample parquet beside a result JSON: `<task>.json` → `<task>.samples.parquet`."""
    return json_path.with_name(json_path.name.removesuffix(".json") + ".samples.parquet")
