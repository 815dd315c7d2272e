"""Results of every source: our own result files, and rows imported from elsewhere.

Imported rows (published numbers, CLIP_benchmark and MTEB result files, open_clip's results CSVs, DataComp's
eval_results.jsonl) are one type, `ImportedResult`. A JSON file's importer (`Importer`) says whether a parsed
file is its own (`recognises(data)`) and turns it into rows (`read(data, path)`); the two table formats are
read by `read_table_rows`. Our own `TaskResult` and `ImportedResult`
share the `ScoreRow` protocol, which is what the leaderboard, `compare` and the DataFrame read.
Imported rows are labelled by their importer's `name` and never ranked.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol, Sequence

from vtde_bench.errors import UserError
from vtde_bench.kinds import find_kind, kind_of_clip_benchmark_task, kind_of_metrics
from vtde_bench.results.records import ScoreRow, TaskResult
from vtde_bench.results.store import read_json


@dataclass(frozen=True)
class ImportedResult:
    """One (model, task) result another tool or a paper reported: a `ScoreRow`. Metric values are fractions."""

    model_name: str  # a label that names the source
    task_name: str
    task_type: str
    main_metric: str
    metrics: Mapping[str, float]
    source: str  # the importer's name
    model_path: str | None = None
    intervals: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    path: Path | None = None
    # What an imported row does not know; the ScoreRow protocol asks for it.
    task_version: int | None = None
    limit: int | None = None
    dataset_fingerprint: str | None = None
    weights_fingerprint: str | None = None

    @property
    def limited(self) -> bool:
        return self.limit is not None


class Importer(Protocol):
    name: str  # the `source` of the rows it makes

    def recognises(self, data: Any) -> bool:
        """Whether a parsed JSON file is of this importer's format."""

    def read(self, data: Any, path: Path | None) -> list[ImportedResult]:
        """The rows of such a file."""


PUBLISHED = "published"


class PublishedRows:
    """vtde-bench's file of published reference numbers (`vtde_bench/reference/published.json`), or one like it."""

    name = PUBLISHED

    def recognises(self, data: Any) -> bool:
        return isinstance(data, dict) and isinstance(data.get("rows"), list) and \
            str(data.get("schema", "")).startswith("vtde-bench published")

    def read(self, data: Any, path: Path | None) -> list[ImportedResult]:
        return self.rows(data["rows"], path)

    def rows(self, rows: Sequence[dict[str, Any]], path: Path | None = None) -> list[ImportedResult]:
        from vtde_bench.tasks import load_card, registry

        cards, types = registry(), {}
        out = []
        for row in rows:
            for task, metrics in row["metrics"].items():
                # The rows name no type: a built-in task's card says it, else the kind whose metrics these are. A
                # metric no kind computes yet (DataComp's worst-group accuracies) keeps its own name: it is shown
                # where a group asks for it (`Group.metrics`), never read as another metric.
                if task in cards and task not in types:
                    types[task] = load_card(cards[task]).type
                kind = find_kind(types[task]) if task in cards else kind_of_metrics(list(metrics))
                task_type = kind.type if kind is not None else "pending"
                main = kind.default_main_metric if kind is not None and kind.default_main_metric in metrics else next(iter(metrics))
                out.append(ImportedResult(model_name=row.get("label") or f"{row['model']} (published)", model_path=row["model"],
                                          task_name=task, task_type=task_type, main_metric=main,
                                          metrics=dict(metrics), source=self.name, path=path))
        return out


class ClipBenchmark:
    """CLIP_benchmark's result JSON (its `cli.py`: dataset, model, pretrained, task, metrics, language).

    The kind whose `clip_benchmark_task` is the file's `task` names its metrics our way.
    """

    name = "clip_benchmark"
    # CLIP_benchmark's dataset names (after any `wds/` and `vtab/` prefix) → our task names.
    TASKS = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet1k": "imagenet1k", "flickr30k": "flickr30k",
             "mscoco_captions": "mscoco"}

    def recognises(self, data: Any) -> bool:
        return isinstance(data, dict) and {"dataset", "model", "pretrained", "task", "metrics"} <= set(data)

    def read(self, data: Any, path: Path | None) -> list[ImportedResult]:
        name = str(data["dataset"])
        for prefix in ("wds/", "vtab/"):
            name = name.removeprefix(prefix)
        kind = kind_of_clip_benchmark_task(data["task"])
        if kind is None:
            raise UserError(f"{path}: CLIP_benchmark task {data['task']!r} cannot be imported (no kind of evaluation reads it)")
        # CLIP_benchmark writes acc5 = NaN with fewer than five classes.
        numbers = {k: float(v) for k, v in data["metrics"].items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)}
        language = data.get("language") or "en"
        label = f"{data['model']} / {data['pretrained']}{'' if language == 'en' else f' [{language}]'} (CLIP_benchmark)"
        return [ImportedResult(model_name=label, model_path=f"{data['model']},{data['pretrained']}",
                               task_name=self.TASKS.get(name, name.replace("/", "_")), task_type=kind.type,
                               main_metric=kind.default_main_metric, metrics=kind.import_metrics(numbers), source=self.name,
                               path=path)]


class MtebResults:
    """An MTEB result file (`results/<org__model>/<revision>/<Task>.json`: task_name, mteb_version, scores per split,
    each a list of subsets with `main_score`). MTEB's image tasks follow another protocol (one template for zero-shot
    classification; nDCG@10 on another COCO caption set for retrieval), so every row is labelled as another protocol.
    Its zero-shot classification tasks on our datasets stand in our task's column, their accuracy as acc1; the
    others keep MTEB's names."""

    name = "mteb"
    TYPE = "mteb"  # a task type no kind reads: never averaged with ours
    ZERO_SHOT = {"CIFAR10ZeroShot": "cifar10", "CIFAR100ZeroShot": "cifar100", "Imagenet1kZeroShot": "imagenet1k",
                 "MNISTZeroShot": "mnist", "STL10ZeroShot": "stl10", "GTSRBZeroShot": "gtsrb", "Country211ZeroShot": "country211",
                 "DTDZeroShot": "dtd", "EuroSATZeroShot": "eurosat", "Food101ZeroShot": "food101", "RESISC45ZeroShot": "resisc45",
                 "PatchCamelyonZeroShot": "pcam", "OxfordPetsZeroShot": "pets", "FGVCAircraftZeroShot": "fgvc_aircraft",
                 "Caltech101ZeroShot": "caltech101"}

    def recognises(self, data: Any) -> bool:
        return isinstance(data, dict) and {"task_name", "mteb_version", "scores"} <= set(data)

    def read(self, data: Any, path: Path | None) -> list[ImportedResult]:
        scores = data.get("scores") or {}
        split = "test" if "test" in scores else next(iter(scores), None)
        entries = scores.get(split) or []
        entry = next((e for e in entries if e.get("hf_subset") in ("default", None)), entries[0] if entries else None)
        if not isinstance(entry, dict) or _number(entry.get("main_score")) is None:
            return []
        metrics = {k: float(v) for k, v in entry.items() if k != "main_score" and _number(v) is not None and 0 <= float(v) <= 1}
        metrics["main_score"] = float(entry["main_score"])
        model = path.parent.parent.name.replace("__", "/") if path is not None and path.parent.parent.name else "model"
        label = f"{model} (MTEB, another protocol)"
        ours = self.ZERO_SHOT.get(str(data["task_name"]))
        card = _card(ours) if ours is not None else None
        if card is not None and "accuracy" in metrics:  # top-1 accuracy: the kind's default metric (not the card's
            top1 = card.kind.default_main_metric  # main one, which is mean per-class recall for some DataComp sets)
            return [ImportedResult(model_name=label, model_path=model, task_name=ours, task_type=card.type, main_metric=top1,
                                   metrics={top1: metrics["accuracy"]}, source=self.name, path=path)]
        return [ImportedResult(model_name=label, model_path=model, task_name=f"MTEB {data['task_name']}", task_type=self.TYPE,
                               main_metric="main_score", metrics=metrics, source=self.name, path=path)]


IMPORTERS: list[Importer] = [ClipBenchmark(), PublishedRows(), MtebResults()]


def _datacomp_tasks() -> tuple[dict[str, str], Any]:
    """DataComp's task names (tasklist.yml's, open_clip's CSV headers) → our task names, and the datacomp group."""
    from vtde_bench.tasks import groups

    group = groups()["datacomp"]
    return {name: task for task, name in group.columns.items()}, group


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


@functools.lru_cache(maxsize=None)  # a published table names each task once per row and column
def _card(task: str) -> Any:
    from vtde_bench.tasks import load_card, registry

    cards = registry()
    return load_card(cards[task]) if task in cards else None


def _kind_of(task: str) -> Any:
    card = _card(task)
    return find_kind(card.type) if card is not None else None


def _datacomp_metric(task: str, group: Any) -> str:
    """The metric a DataComp table holds for a task: the group's, else its card's main metric (DataComp's)."""
    card = _card(task)
    return group.metric_for(task, card.main_metric if card is not None else "")


class OpenClipCsv:
    """open_clip's results tables (`docs/openclip_results.csv`: DataComp's 38 tasks under their tasklist names, each
    its task's DataComp main metric; `docs/openclip_retrieval_results.csv`: retrieval recalls and WinoGAViL's
    scores). Fractions. 'image retr.' is text→image, 'text retr.' image→text (CLIP_benchmark's naming)."""

    name = "openclip_csv"
    RETRIEVAL = {"Flickr": "flickr30k", "MSCOCO": "mscoco"}
    # Columns named as CLIP_benchmark names the metrics (its "image retrieval" is text→image); the kind renames them.
    DIRECTIONS = {"image retr.": "image_retrieval_recall", "text retr.": "text_retrieval_recall"}

    def recognises_table(self, header: list[str]) -> bool:
        return header[:2] == ["name", "pretrained"] and any(h.startswith(("Average perf. on", "Average score")) for h in header)

    def _metric(self, column: str, names: dict[str, str], group: Any) -> tuple[str, str] | None:
        """(task, metric) of a column, or None for one that holds no task's metric."""
        if column in names:
            return names[column], _datacomp_metric(names[column], group)
        for dataset, task in self.RETRIEVAL.items():
            for direction, metric in self.DIRECTIONS.items():
                prefix = f"{dataset} {direction} R@"
                if column.startswith(prefix):
                    return task, f"{metric}@{column[len(prefix):]}"
        if column.startswith("WinoGAViL ") and "jaccard score" in column:  # "WinoGAViL jaccard score 10-12": DataComp's
            return names["WinoGAViL"], column[len("WinoGAViL "):].replace(" ", "_")  # metric names, spaced
        return None

    def read_table(self, rows: list[dict[str, str]], header: list[str], path: Path | None) -> list[ImportedResult]:
        names, group = _datacomp_tasks()
        columns = {c: m for c in header if (m := self._metric(c, names, group)) is not None}
        out = []
        for row in rows:
            by_task: dict[str, dict[str, float]] = {}
            for column, (task, metric) in columns.items():
                value = _number(row.get(column))
                if value is not None:
                    by_task.setdefault(task, {})[metric] = value
            label = f"{row['name']} / {row['pretrained']} (open_clip CSV)"
            for task, metrics in by_task.items():
                kind = _kind_of(task) or kind_of_metrics(list(metrics))
                metrics = kind.import_metrics(metrics) if kind is not None else metrics
                main = next((m for m in (_datacomp_metric(task, group), kind.default_main_metric if kind else None)
                             if m in metrics), next(iter(metrics)))
                out.append(ImportedResult(model_name=label, model_path=f"{row['name']},{row['pretrained']}", task_name=task,
                                          task_type=kind.type if kind is not None else "unknown", main_metric=main,
                                          metrics=metrics, source=self.name, path=path))
        return out


class DataCompJsonl:
    """DataComp's `eval_results.jsonl` (its evaluate.py): a line per task, {"key", "dataset", "metrics"}, the task
    named as tasklist.yml names it, retrieval metrics named as CLIP_benchmark names them, `metrics.main_metric`
    repeating the task's main metric. The file names no model: its folder does."""

    name = "datacomp_jsonl"

    def recognises_lines(self, first: Any) -> bool:
        return isinstance(first, dict) and {"key", "dataset", "metrics"} <= set(first)

    def read_lines(self, lines: list[dict[str, Any]], path: Path | None) -> list[ImportedResult]:
        names, group = _datacomp_tasks()
        model = path.parent.name if path is not None else "datacomp"
        out = []
        for line in lines:
            task = names.get(str(line.get("dataset")))
            if task is None:  # FairFace, UTKFace and others without a card here
                continue
            numbers = {k: v for k, v in ((k, _number(v)) for k, v in (line.get("metrics") or {}).items() if k != "main_metric")
                       if v is not None}
            kind = _kind_of(task)
            metrics = kind.import_metrics(numbers)
            main = _datacomp_metric(task, group)
            out.append(ImportedResult(model_name=f"{model} (DataComp eval_results.jsonl)", model_path=model, task_name=task,
                                      task_type=kind.type, main_metric=main if main in metrics else next(iter(metrics)),
                                      metrics=metrics, source=self.name, path=path))
        return out


OPENCLIP_CSV, DATACOMP_JSONL = OpenClipCsv(), DataCompJsonl()
TABLE_SUFFIXES = (".csv", ".jsonl")  # results of other tools that are tables, not one JSON document


def read_table_rows(path: Path, *, explicit: bool) -> list[ScoreRow]:
    """The rows of an open_clip results CSV or a DataComp eval_results.jsonl; a file of neither kind found in a folder
    is skipped (it may be anything), one named explicitly is an error."""
    import csv
    import json

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {path} ({e})") from None
    if path.suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        header = list(reader.fieldnames or [])
        if OPENCLIP_CSV.recognises_table(header):
            return list(OPENCLIP_CSV.read_table(list(reader), header, path))
    else:
        try:
            lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            lines = None
            if explicit:
                raise UserError(f"{path}: not JSON lines ({e})") from None
        if lines and DATACOMP_JSONL.recognises_lines(lines[0]):
            return list(DATACOMP_JSONL.read_lines(lines, path))
    if explicit:
        raise UserError(f"{path} is neither an open_clip results CSV nor a DataComp eval_results.jsonl")
    return []


def published_results() -> list[ImportedResult]:
    """The published reference rows shipped with vtde-bench (`vtde_bench/reference/published.json`)."""
    from vtde_bench.reference import published_rows

    return PublishedRows().rows(published_rows())


def _is_ours(data: Any) -> bool:
    return isinstance(data, dict) and "schema_version" in data and {"task", "model", "metrics"} <= set(data)


def read_rows(path: Path, *, explicit: bool = True) -> list[ScoreRow]:
    """The rows in one JSON file: our result, or what an importer reads. A file named explicitly must be one;
    one found in a folder may be anything.

    Raises:
        UserError: the file is unreadable, not JSON, or (named explicitly) of no known source.
    """
    if path.suffix in TABLE_SUFFIXES:
        return read_table_rows(path, explicit=explicit)
    data = read_json(path)
    if _is_ours(data):
        return [TaskResult.from_json(data, where=str(path), path=path)]
    for importer in IMPORTERS:
        if importer.recognises(data):
            return list(importer.read(data, path))
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
            for file in sorted(p for suffix in (".json", *TABLE_SUFFIXES) for p in path.rglob(f"*{suffix}")):
                if file.is_file() and not any(part.startswith(".") for part in file.relative_to(path).parts):
                    found.setdefault(file.resolve(), False)
        elif path.is_file():
            if path.suffix not in (".json", *TABLE_SUFFIXES):
                raise UserError(f"{path} is not a result JSON, an open_clip results CSV or a DataComp eval_results.jsonl "
                                "(per-sample .parquet files are found beside their JSON)")
            found[path.resolve()] = True
        else:
            raise UserError(f"no such file or folder: {path}")
    return list(found.items())


def load_rows(paths: Iterable[str | Path] | str | Path, *, published: bool = False) -> list[ScoreRow]:
    """Every result under `paths` (folders or files), ours and imported, plus the shipped published rows when `published`."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    rows = [r for file, explicit in result_files(paths) for r in read_rows(file, explicit=explicit)]
    return rows + (published_results() if published else [])


def read_task_results(paths: Iterable[str | Path] | str | Path) -> list[TaskResult]:
    """Our own results under `paths` (imported rows are left out)."""
    return [r for r in load_rows(paths) if isinstance(r, TaskResult)]
