"""Our results in the formats people publish numbers in: a model card's `model-index` (huggingface_hub's
`EvalResult`s), and open_clip's results CSV (`docs/openclip_results.csv`: one row per model, DataComp's 38 tasks).

Values are written as the results hold them: fractions, exactly (no rounding, no percent conversion).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

from vtde_bench.errors import UserError
from vtde_bench.kinds import find_kind
from vtde_bench.results.records import TaskResult

SOURCE_NAME = "vtde-bench"
SOURCE_URL = "https://github.com/vtde-bench/vtde-bench"
# open_clip's results CSV: the columns before the tasks'.
OPENCLIP_LEADING = ("name", "pretrained", "params (M)", "FLOPs (B)")


def by_model(results: Sequence[TaskResult]) -> dict[str, list[TaskResult]]:
    """Results by model slug, each model's in task order.

    Raises:
        UserError: no results, or two results of one task for one model (name one folder).
    """
    if not results:
        raise UserError("no vtde-bench results to export; run 'vtde-bench run' first or name result folders")
    out: dict[str, dict[str, TaskResult]] = {}
    for r in results:
        tasks = out.setdefault(r.model_name, {})
        if r.task_name in tasks:
            raise UserError(f"two results of task {r.task_name} for model {r.model_name} ({tasks[r.task_name].path} and "
                            f"{r.path}); export one folder per run")
        tasks[r.task_name] = r
    return {model: [tasks[t] for t in sorted(tasks)] for model, tasks in sorted(out.items())}


def eval_results(results: Sequence[TaskResult]) -> list[Any]:
    """huggingface_hub `EvalResult`s of one model's results: one per metric, the dataset named by its hub id.

    Raises:
        UserError: a result's data has no hub id (a local card: the Hub's `dataset.type` must be one).
    """
    from huggingface_hub import EvalResult

    out = []
    for r in results:
        if not r.dataset.hub:
            raise UserError(f"task {r.task_name}: its data came from {r.dataset.source}, not a hub dataset; model-index "
                            "needs the hub id as dataset.type (export the results of hub cards only)")
        kind = find_kind(r.task_type)  # the Hub's task of the kind (`Kind.hub_task`; "other" for a kind not installed)
        task_type, task_name = kind.hub_task if kind is not None else ("other", r.task_type)
        for metric, value in r.metrics.items():
            out.append(EvalResult(
                task_type=task_type, task_name=task_name, dataset_type=r.dataset.hub, dataset_name=r.task_name,
                dataset_config=_config(r), dataset_split=r.dataset.split, dataset_revision=r.dataset.revision,
                metric_type=metric, metric_value=value, metric_name=f"{metric}{' (main)' if metric == r.main_metric else ''}",
                source_name=SOURCE_NAME, source_url=SOURCE_URL))
    return out


def _config(r: TaskResult) -> str | None:
    profile = r.run.profile
    return getattr(profile, "config", None) if profile is not None else None


def model_index(model: str, results: Sequence[TaskResult]) -> dict[str, Any]:
    """The `model-index` block of a model card's front matter, as a dict ({"model-index": [...]})."""
    from huggingface_hub.repocard_data import eval_results_to_model_index

    return {"model-index": eval_results_to_model_index(model, eval_results(results))}


def merged_card(card: str, model: str, results: Sequence[TaskResult], *, where: str = "the card") -> str:
    """A model card's text (README.md) with our results merged into its `model-index`: every result already there
    stays, but those an earlier export of vtde-bench wrote, which ours replace.

    Raises:
        UserError: the text is not a model card.
    """
    from huggingface_hub import ModelCard

    try:
        existing = ModelCard(card)
    except (ValueError, TypeError) as e:
        raise UserError(f"{where}: cannot read it as a model card ({e})") from None
    kept = [e for e in (existing.data.eval_results or []) if e.source_name != SOURCE_NAME]
    existing.data.eval_results = kept + eval_results(results)
    existing.data.model_name = existing.data.model_name or model
    return str(existing)


def openclip_csv(models: dict[str, list[TaskResult]], group: Any) -> str:
    """open_clip's results CSV (`docs/openclip_results.csv`): a row per model, a column per member of `group`
    (headed by `group.columns`, in their order) holding the member's score in the group (its DataComp main
    metric), and the plain mean over all of them (empty unless every member is there). Fractions, as open_clip's.
    A model loaded by open_clip is named by its architecture and pretrained tag, as open_clip's rows are.
    """
    import csv

    tasks = list(group.columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*OPENCLIP_LEADING, f"Average perf. on {len(tasks)} datasets", *(group.columns[t] for t in tasks)])
    for model, results in models.items():
        by_task = {r.task_name: r for r in results}
        scores = {}
        for task in tasks:
            r = by_task.get(task)
            metric = group.metric_for(task, r.main_metric if r is not None else "")
            if r is not None and metric in r.metrics:
                scores[task] = r.metrics[metric]
        first = results[0].model
        extra = first.extra or {}
        name = extra.get("open_clip_model") or first.path or model
        params = first.num_parameters
        average = sum(scores.values()) / len(tasks) if len(scores) == len(tasks) else None
        writer.writerow([name, extra.get("pretrained") or "", "" if params is None else f"{params / 1e6:.2f}", "",
                         "" if average is None else repr(average), *(repr(scores[t]) if t in scores else "" for t in tasks)])
    return buffer.getvalue()


def card_of(result: TaskResult) -> Any:
    """The card a result was made with: its recorded card file, else the built-in card of its name; None if neither."""
    from vtde_bench.tasks import load_card, registry

    for path in (result.task.card, registry().get(result.task_name)):
        if path is not None and Path(path).is_file():
            try:
                return load_card(path)
            except UserError:
                return None
    return None


def eval_result_files(results: Sequence[TaskResult]) -> tuple[dict[str, str], list[str]]:
    """The Hub's `.eval_results/<task>.yaml` files of one model's results ({file name: YAML}), written only for tasks
    whose card names a registered Hub benchmark and its task (`hub_benchmark`, `hub_benchmark_task`): the Hub takes
    results for those only. Returns the files and a one-line note per task skipped."""
    import yaml
    from huggingface_hub import EvalResultEntry, eval_result_entries_to_yaml

    from vtde_bench import __version__

    files, skipped = {}, []
    for r in results:
        card = card_of(r)
        if card is None or card.hub_benchmark is None:
            skipped.append(f"{r.task_name}: its card names no Hub benchmark (hub_benchmark, hub_benchmark_task); the Hub "
                           "takes eval results for registered benchmark datasets only, so none is written")
            continue
        dataset, task = card.hub_benchmark
        entry = EvalResultEntry(
            dataset_id=dataset, task_id=task, value=r.main_score, dataset_revision=r.dataset.revision,
            date=r.run.date[:10] if r.run.date else None, source_url=SOURCE_URL, source_name=SOURCE_NAME,
            notes=f"vtde-bench {__version__}: {r.task_name} (card version {r.task_version}), {r.main_metric} as a fraction, "
                  f"{r.run.precision}")
        files[f"{r.task_name}.yaml"] = yaml.safe_dump(eval_result_entries_to_yaml([entry]), sort_keys=False)
    return files, skipped
