"""The engine: one task on one loaded model, from its data to its result record.

The flow: load the data (and its fingerprint); reuse a result of the same weights, data and
profile; else embed and score (the task's kind), add bootstrap intervals, attach provenance,
and write atomically (rank 0 under torchrun). Nothing here prints: notes go to `progress`.
"""

from __future__ import annotations

import datetime as _dt
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from vtde_bench import bootstrap
from vtde_bench.data import TaskData, bind_task, load_task_data
from vtde_bench.dist import Shard
from vtde_bench.embedding import default_workers
from vtde_bench.evaluators import Context, Outcome, evaluate_task
from vtde_bench.encoders.base import Embedder
from vtde_bench.profile import Profile, run_profile
from vtde_bench.results import (DatasetRecord, ModelRecord, RunRecord, TaskRecord, TaskResult, find_existing, result_path,
                                write_result)
from vtde_bench.spec import TaskSpec

BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Done:
    """A task's result, where it was written (None: nothing written), and whether it was an existing one."""

    result: TaskResult
    path: Path | None
    reused: bool


def library_versions() -> dict[str, str]:
    import datasets
    import torch
    import transformers

    from vtde_bench import __version__

    return {
        "vtde_bench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
    }


def run_task(task: TaskSpec, model: Embedder, context: Context, *, shard: Shard, load_model_s: float,
             versions: dict[str, str]) -> Done:
    """Evaluate one task on a loaded model, or reuse the result on disk of the same weights, data and profile."""
    options, progress = context.options, context.progress
    started = time.perf_counter()
    task = task.kind.configure(task, options)  # what the options change in the task (a probe's --shots)
    with progress.bar(f"Loading data for {task.name}", total=None):
        task = bind_task(task, options.data_dir)  # what the card takes from the source's own files (class names)
        data = load_task_data(task, data_dir=options.data_dir, limit=options.limit, progress=progress, cache=context.cache)
    data_seconds = time.perf_counter() - started
    profile = run_profile(task, model, limit=options.limit, bootstrap=options.bootstrap, bootstrap_seed=BOOTSTRAP_SEED,
                          skip_bad_images=options.skip_bad_images)
    json_path = None if options.output_dir is None else result_path(options.output_dir, model.info.slug, task.name)
    existing = _existing(json_path, model, data, profile, overwrite=options.overwrite)
    existing = shard.gather([existing])[0]  # rank 0's view decides for every rank, so that all ranks do the same work
    if existing is not None:
        progress.note(f"{task.name}: a result of these weights, data and profile exists at {json_path}; reusing it "
                      "(--overwrite to redo)")
        return Done(existing, json_path, reused=True)

    outcome = evaluate_task(task, model, data, context)
    timings = {"load_model_s": load_model_s, "load_data_s": data_seconds, **outcome.timings}
    started_ci = time.perf_counter()
    intervals = {} if options.bootstrap == 0 else bootstrap.intervals(
        task.kind, outcome.samples, task.metrics, resamples=options.bootstrap, seed=BOOTSTRAP_SEED)
    timings["bootstrap_s"] = time.perf_counter() - started_ci
    timings["task_total_s"] = time.perf_counter() - started
    # Throughput of the forward passes; a run served wholly from the cache has none to report.
    all_cached = outcome.extra.get("image_chunks_from_cache") == outcome.extra.get("image_chunks")
    timings["images_per_s"] = None if all_cached else outcome.num_images / max(outcome.timings["embed_images_s"], 1e-9)
    for key, message in outcome.bad_images:
        progress.note(f"{task.name}: skipped bad image {key!r} ({message})")
    for warning in outcome.warnings:
        progress.note(f"{task.name}: {warning}")
    result = _record(task, model, data, outcome, context, profile=profile, intervals=intervals, timings=timings,
                     versions=versions, shard=shard)
    written = write_result(result, options.output_dir) if options.output_dir is not None and shard.rank == 0 else None
    return Done(result, written, reused=False)


def _existing(json_path: Path | None, model: Embedder, data: TaskData, profile: Profile, *, overwrite: bool) -> TaskResult | None:
    # A model without a weights fingerprint cannot be recognised again: always evaluated.
    if json_path is None or overwrite or model.info.weights_fingerprint is None:
        return None
    return find_existing(json_path, weights=model.info.weights_fingerprint, dataset=data.fingerprint, profile=profile.fingerprint)


def _record(task: TaskSpec, model: Embedder, data: TaskData, outcome: Outcome, context: Context, *, profile: Profile,
            intervals: dict[str, list[float]], timings: dict[str, float | None], versions: dict[str, str],
            shard: Shard) -> TaskResult:
    """The typed result of an evaluation, with the provenance of its task, model, data and run."""
    options, info = context.options, model.info
    return TaskResult(
        task=TaskRecord(name=task.name, version=task.version, type=task.type, main_metric=task.main_metric,
                        card=str(task.card_path) if task.card_path else None),
        model=ModelRecord(
            path=info.path, slug=info.slug, revision=info.revision, resolved_commit=info.resolved_commit,
            weights_fingerprint=info.weights_fingerprint, num_parameters=info.num_parameters,
            embedding_dim=info.embedding_dim, model_type=info.model_type, extra=dict(info.extra),
        ),
        dataset=DatasetRecord(
            source=task.source.describe(), hub=task.source.hub, revision=task.source.revision,
            resolved_commit=data.resolved_commit,
            split=task.source.split, layout=data.layout, location=data.location,
            fingerprint=data.fingerprint, num_images=outcome.num_images, num_texts=outcome.num_texts,
            num_bad_images=len(outcome.bad_images), bad_image_keys=tuple(k for k, _ in outcome.bad_images),
            num_blank_captions=data.blank_captions if data.captions is not None else None,
        ),
        run=RunRecord(
            precision=model.precision, device=str(model.device), batch_size=options.batch_size,
            batch_size_used=min(options.batch_size, getattr(model, "max_batch", None) or options.batch_size),
            workers=default_workers() if options.workers is None else options.workers, limit=options.limit,
            skip_bad_images=options.skip_bad_images, bootstrap_resamples=options.bootstrap, bootstrap_seed=BOOTSTRAP_SEED,
            date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            timings=timings, versions=versions, world_size=shard.world,
            cache={"enabled": context.cache is not None, **outcome.extra}, profile=profile,
        ),
        metrics=outcome.metrics,
        main_score=outcome.metrics[task.main_metric],
        per_class_recall=outcome.per_class_recall,
        per_group=outcome.per_group,
        details=outcome.details,
        intervals={k: (v[0], v[1]) for k, v in intervals.items()},
        warnings=tuple(outcome.warnings),
        counts=dict(outcome.counts),
        samples=outcome.samples,
    )
