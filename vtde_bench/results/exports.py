"""Our results in the formats people publish numbers in: a model card's `model-index` (huggingface_hub's
`EvalResult`s), and open_clip's results CSV (`docs/openclip_results.csv`: one row per model, DataComp's 38 tasks).

Values are written as the results hold them: fractions, exactly (no rounding, no percent conversion).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

from vtde_bench.errors import UserError
from vtde_bench.results.records import TaskResult

SOURCE_NAME = "vtde-bench"
SOURCE_URL = "https://github.com/vtde-bench/vtde-bench"
# The Hub's task ids (huggingface.js pipelines): zero-shot classification has its own; retrieval and the other
# kinds have none, and "other" is what the Hub (and MTEB) use for them.
TASK_TYPES = {"zeroshot_classification": ("zero-shot-image-classification", "Zero-Shot Image Classification"),
              "linear_probe": ("image-classification", "Image Classification (linear probe)")}
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
        task_type, task_name = TASK_TYPES.get(r.task_type, ("other", r.task_type.replace("_", " ").capitalize()))
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


def merged_card(card: Path, model: str, results: Sequence[TaskResult]) -> str:
    """A model card (README.md) with our results merged into its `model-index`: every result already there stays,
    but those an earlier export of vtde-bench wrote, which ours replace.

    Raises:
        UserError: the card cannot be read.
    """
    from huggingface_hub import ModelCard

    try:
        existing = ModelCard.load(card)
    except (OSError, ValueError) as e:
        raise UserError(f"--card {card}: cannot read it as a model card ({e})") from None
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
            metric = group.metrics.get(task) or (r.main_metric if r is not None else "")
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
