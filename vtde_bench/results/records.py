"""Result records: typed, versioned, one per (model, task).

A `TaskResult` is four frozen sections (task, model, dataset, run, the run with its typed
`Profile`) and the scores. `to_json`/`from_json` write and read the JSON layout of the result
files; `from_json` also reads every earlier schema (1: no profile, no warnings; written before
results were typed). Metric values are fractions in [0, 1].

`ScoreRow` is the small protocol that our results and imported rows (published numbers, other
tools' files; `results.importers`) share: what the leaderboard, `compare` and the DataFrame read.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Protocol

from vtde_bench.errors import UserError
from vtde_bench.profile import Profile

SCHEMA_VERSION = 2
OURS = "vtde-bench"  # the `source` of our own results; imported rows carry their importer's name


class ScoreRow(Protocol):
    """One (model, task) result of any source, as the leaderboard, `compare` and the DataFrame read it."""

    @property
    def model_name(self) -> str: ...  # our runs: the model's slug; imported rows: a label naming the source
    @property
    def model_path(self) -> str | None: ...
    @property
    def task_name(self) -> str: ...
    @property
    def task_type(self) -> str: ...
    @property
    def main_metric(self) -> str: ...
    @property
    def metrics(self) -> Mapping[str, float]: ...
    @property
    def intervals(self) -> Mapping[str, tuple[float, float]]: ...
    @property
    def source(self) -> str: ...
    @property
    def task_version(self) -> int | None: ...
    @property
    def limit(self) -> int | None: ...
    @property
    def limited(self) -> bool: ...
    @property
    def dataset_fingerprint(self) -> str | None: ...
    @property
    def weights_fingerprint(self) -> str | None: ...
    @property
    def path(self) -> Path | None: ...  # the file it was read from (None: not read from a file)


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class TaskRecord:
    name: str
    version: int
    type: str
    main_metric: str
    card: str | None = None  # the card file the run read


@dataclass(frozen=True)
class ModelRecord:
    path: str  # the folder or hub id given
    slug: str  # the folder name results are filed under
    revision: str | None = None
    resolved_commit: str | None = None
    weights_fingerprint: str | None = None
    num_parameters: int | None = None
    embedding_dim: int | None = None
    model_type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # what an adapter adds (image_preprocessing, weights_format); flat in JSON

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {**{k: v for k, v in data.items() if k != "extra"}, **data["extra"]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ModelRecord":
        known = _known(cls, data)
        return cls(**known, extra={k: v for k, v in data.items() if k not in known})


@dataclass(frozen=True)
class DatasetRecord:
    source: str
    fingerprint: str  # content only: the same rows in any order or layout give the same value
    num_images: int
    num_texts: int
    hub: str | None = None
    revision: str | None = None
    resolved_commit: str | None = None  # the commit the data are of: the pinned revision, what an unpinned one
    # resolved to, or a downloaded copy's record; None where unknown (a local copy made otherwise)
    split: str | None = None
    layout: str | None = None
    location: str | None = None
    num_bad_images: int = 0
    bad_image_keys: tuple[str, ...] = ()
    num_blank_captions: int | None = None  # kinds that need captions

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["bad_image_keys"] = list(self.bad_image_keys)
        for optional in ("num_blank_captions", "resolved_commit"):  # written where known
            if data[optional] is None:
                del data[optional]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "DatasetRecord":
        known = _known(cls, data)
        known["bad_image_keys"] = tuple(known.get("bad_image_keys") or ())
        return cls(**known)


@dataclass(frozen=True)
class RunRecord:
    precision: str
    device: str
    batch_size: int | None = None
    batch_size_used: int | None = None
    workers: int | None = None
    limit: int | None = None
    skip_bad_images: bool = False
    bootstrap_resamples: int | None = None
    bootstrap_seed: int | None = None
    date: str | None = None
    world_size: int = 1
    timings: dict[str, float | None] = field(default_factory=dict)  # seconds, and images_per_s
    versions: dict[str, str] = field(default_factory=dict)  # python, torch, transformers, datasets, vtde_bench
    cache: dict[str, Any] = field(default_factory=dict)  # enabled, chunks read and computed
    profile: Profile | None = None  # None: written before results held one (never reused)

    @property
    def limited(self) -> bool:
        return self.limit is not None

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "profile"}
        data["limited"] = self.limited
        if self.profile is not None:
            data["profile"] = self.profile.to_dict()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RunRecord":
        known = _known(cls, data)
        profile = known.pop("profile", None)
        return cls(**known, profile=Profile.from_dict(profile) if isinstance(profile, Mapping) else None)


@dataclass(frozen=True)
class TaskResult:
    """The outcome of one task on one model: the `ScoreRow` of our own runs."""

    task: TaskRecord
    model: ModelRecord
    dataset: DatasetRecord
    run: RunRecord
    metrics: dict[str, float]
    main_score: float
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # 95% bootstrap interval of each metric (none: {})
    per_class_recall: dict[str, float | None] | None = None  # kinds with classes: each class's top-1 recall
    # Group metrics' groups: {metric: {"field=value": {"value": its hit rate, "images": its images}}}
    per_group: dict[str, dict[str, dict[str, Any]]] | None = None
    details: dict[str, Any] | None = None  # what a kind chose or measured besides its metrics (a probe's λ, its draws)
    warnings: tuple[str, ...] = ()  # what may make the numbers mean less than they seem
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # (hits, queries) behind each count metric
    schema_version: int = SCHEMA_VERSION
    samples: Any = field(default=None, repr=False, compare=False)  # pandas.DataFrame, written beside the JSON
    path: Path | None = field(default=None, compare=False)  # the JSON it was read from

    # ---------------------------------------------------------------- ScoreRow
    source = OURS

    @property
    def model_name(self) -> str:
        return self.model.slug

    @property
    def model_path(self) -> str | None:
        return self.model.path

    @property
    def task_name(self) -> str:
        return self.task.name

    @property
    def task_type(self) -> str:
        return self.task.type

    @property
    def main_metric(self) -> str:
        return self.task.main_metric

    @property
    def task_version(self) -> int | None:
        return self.task.version

    @property
    def limit(self) -> int | None:
        return self.run.limit

    @property
    def limited(self) -> bool:
        return self.run.limited

    @property
    def dataset_fingerprint(self) -> str | None:
        return self.dataset.fingerprint

    @property
    def weights_fingerprint(self) -> str | None:
        return self.model.weights_fingerprint

    # ---------------------------------------------------------------- JSON

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "task": asdict(self.task),
            "model": self.model.to_json(),
            "dataset": self.dataset.to_json(),
            "metrics": dict(self.metrics),
            "main_score": self.main_score,
            "run": self.run.to_json(),
            "per_class_recall": self.per_class_recall,
            "per_group": self.per_group,
            "details": self.details,
            "intervals": {k: list(v) for k, v in self.intervals.items()} or None,
            "warnings": list(self.warnings),
            "counts": {k: list(v) for k, v in self.counts.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, where: str = "result", path: Path | None = None) -> "TaskResult":
        """A result from its JSON, of this schema or any earlier one.

        Raises:
            UserError: not a result, a schema from a newer vtde-bench, or a damaged one.
        """
        version = data.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= SCHEMA_VERSION:
            raise UserError(f"{where}: schema_version {version!r} is not one this vtde-bench reads (1 to {SCHEMA_VERSION}); "
                            "rerun the evaluation, or upgrade vtde-bench")
        missing = {"task", "model", "dataset", "metrics", "main_score", "run"} - set(data)
        if missing:
            raise UserError(f"{where}: not a vtde-bench result (missing {', '.join(sorted(missing))})")
        problem = _damage(data)
        if problem:
            raise UserError(f"{where}: damaged result ({problem}); rerun the evaluation with --overwrite")
        intervals = data.get("intervals")
        return cls(
            task=TaskRecord(**_known(TaskRecord, data["task"])),
            model=ModelRecord.from_json(data["model"]),
            dataset=DatasetRecord.from_json(data["dataset"]),
            run=RunRecord.from_json(data["run"]),
            metrics=dict(data["metrics"]),
            main_score=data["main_score"],
            intervals={k: (float(v[0]), float(v[1])) for k, v in (intervals or {}).items()},
            per_class_recall=data.get("per_class_recall"),
            per_group=data.get("per_group"),
            details=data.get("details"),
            warnings=tuple(data.get("warnings") or ()),
            counts={k: (int(v[0]), int(v[1])) for k, v in (data.get("counts") or {}).items()},
            path=path,
        )


def _damage(data: Mapping[str, Any]) -> str | None:
    """What makes a parsed result JSON unusable (a hand edit, a bad merge), or None when its shape is sound."""

    def fraction(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and 0.0 <= x <= 1.0

    for name in ("task", "model", "dataset", "metrics", "run"):
        if not isinstance(data[name], dict):
            return f"'{name}' is {type(data[name]).__name__}, not an object"
    for section, key in (("task", "name"), ("task", "type"), ("task", "main_metric"), ("model", "slug"), ("model", "path"),
                         ("dataset", "source"), ("dataset", "fingerprint"), ("run", "precision"), ("run", "device")):
        if not isinstance(data[section].get(key), str):
            return f"'{section}.{key}' is missing or not text"
    for section, key in (("task", "version"), ("dataset", "num_images"), ("dataset", "num_texts")):
        value = data[section].get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            return f"'{section}.{key}' is missing or not an integer"
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
    per_group = data.get("per_group")
    if per_group is not None and not (isinstance(per_group, dict) and all(
            isinstance(groups, dict) and all(isinstance(g, dict) and fraction(g.get("value")) for g in groups.values())
            for groups in per_group.values())):
        return "'per_group' is not a {metric: {group: {value, images}}} object"
    if data.get("details") is not None and not isinstance(data["details"], dict):
        return "'details' is not an object"
    warnings = data.get("warnings", [])
    if not (isinstance(warnings, list) and all(isinstance(w, str) for w in warnings)):
        return "'warnings' is not a list of text"
    counts = data.get("counts", {})
    if not (isinstance(counts, dict) and all(
            isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
            and 0 <= v[0] <= v[1] > 0 and data["metrics"].get(k) == v[0] / v[1] for k, v in counts.items())):
        return "'counts' is not a [hits, n] pair behind each of its metrics"
    return None
