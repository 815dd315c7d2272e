"""`evaluate`: tasks × one model → results on disk. The CLI is a thin layer over this.

The flow per task: resolve the spec, load the data (and its fingerprint),
skip when a result for the same weights, data and profile exists, evaluate, attach
provenance, write atomically.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vtde_bench.errors import UserError
from vtde_bench.profile import run_profile
from vtde_bench.progress import NullProgress, Progress
from vtde_bench.results import (DatasetRecord, ModelRecord, RunRecord, TaskRecord, TaskResult, find_existing, result_path,
                                write_result)
from vtde_bench.tasks import Task, load_tasks


BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class RunOptions:
    """Everything that shapes a run besides the model and the tasks."""

    output_dir: Path | None = Path("results")
    data_dir: Path | None = None
    batch_size: int = 64
    workers: int | None = None
    device: str = "auto"
    precision: str = "auto"
    limit: int | None = None
    skip_bad_images: bool = False
    overwrite: bool = False
    revision: str | None = None
    trust_remote_code: bool = False
    bootstrap: int = 1000  # resamples for the 95% intervals; 0 turns them off
    cache: bool = True  # read and write the embedding cache (embeddings, and the image hashes behind data fingerprints)
    cache_dir: Path | None = None  # default: $VTDE_BENCH_CACHE or ~/.cache/vtde-bench/embeddings
    chunk_rows: int = 1024  # rows per unit of work: what is cached, resumed and shared out across ranks


@dataclass
class Results:
    """The results of one `evaluate` call, in task order."""

    results: list[TaskResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # task names whose existing result was reused
    paths: dict[str, Path] = field(default_factory=dict)  # task name → result JSON

    def __iter__(self):
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, task_name: str) -> TaskResult:
        for result in self.results:
            if result.task_name == task_name:
                return result
        raise KeyError(f"no result for task {task_name!r}; have {[r.task_name for r in self.results]}")

    def __rich__(self):
        """The CLI's results table: `rich.print(results)` in a terminal or notebook."""
        from rich.console import Group

        from vtde_bench.report import results_table

        return Group(*results_table(self.results))

    def write(self, output_dir: str | Path) -> dict[str, Path]:
        """Write every result (JSON and per-sample file) under `output_dir`, as `run` does."""
        return {r.task_name: write_result(r, output_dir) for r in self.results}

    def to_dataframe(self):
        """One row per (model, task, metric), values as fractions: the columns of `vtde_bench.load_results`."""
        from vtde_bench.results import results_frame

        return results_frame(self.results)


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


def init_distributed() -> None:
    """Join torchrun's process group when launched by it (WORLD_SIZE > 1): gloo on CPU, NCCL on CUDA."""
    import os

    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")


def check_inputs(model: Any, tasks: Sequence[str | Task] | str, options: RunOptions) -> list[Task]:
    """The checks that need no model and no data: options, task names and cards, a local model folder.

    Cheap (no torch, transformers or datasets), so a mistyped argument fails in a fraction of a
    second. Returns the task specs.

    Raises:
        UserError: what is wrong, and how to fix it.
    """
    from vtde_bench.locate import hub_model_from_cache, local_model_folder

    _check_options(options)
    specs = _resolve_tasks(tasks)
    if isinstance(model, (str, Path)) and local_model_folder(str(model), options.revision) is None:
        hub_model_from_cache(str(model), options.revision)  # an unreachable hub fails here, in seconds
    return specs


def _check_options(options: RunOptions) -> None:
    if options.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if options.workers is not None and options.workers < 0:
        raise UserError("--workers must be 0 or more")
    if options.chunk_rows < 1:
        raise UserError("--chunk-rows must be at least 1")
    if options.bootstrap < 0:
        raise UserError("--bootstrap must be 0 (off) or a number of resamples")
    if options.limit is not None and options.limit < 1:
        raise UserError("--limit must be at least 1")
    if options.data_dir is not None and not Path(options.data_dir).is_dir():
        raise UserError(f"--data-dir {options.data_dir} is not a folder")
    if options.output_dir is not None:
        check_writable(Path(options.output_dir), "--output-dir")
    if options.cache and options.cache_dir is not None:
        check_writable(Path(options.cache_dir), "--cache-dir")


def check_writable(folder: Path, option: str) -> None:
    """That files can be made in `folder` (or, when it does not exist yet, in the nearest folder above it),
    by making one and removing it: so a read-only output fails before any work, and nothing is left behind.

    Raises:
        UserError: it cannot be written (names the option to change).
    """
    import tempfile

    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    name = option.split()[0]
    if not existing.is_dir():
        raise UserError(f"cannot write {folder} ({existing} is a file, not a folder); choose another {name}")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".vtde-bench-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"cannot write {folder} ({e.strerror or e}); choose another {name}") from None


def evaluate(
    model: Any,
    tasks: Sequence[str | Task] | str,
    *,
    processor: Any = None,
    options: RunOptions | None = None,
    progress: Progress | None = None,
    **overrides: Any,
) -> Results:
    """Evaluate one model on tasks, writing one result per task under `options.output_dir`.

    Args:
        model: a checkpoint folder or hub id; a loaded transformers dual encoder
            (with `processor`); or any object with `encode_images` / `encode_texts`.
        tasks: registry names, group names, card paths or task specs.
        options: see `RunOptions`; `output_dir=None` writes nothing.
        **overrides: `RunOptions` fields by name, applied over `options`
            (`evaluate(model, tasks, batch_size=32, output_dir=None)`).

    Raises:
        UserError: bad input (exit code 2). RunFailure: a failure while running (3).
    """
    options = _with_overrides(options or RunOptions(), overrides)
    progress = progress or NullProgress()
    specs = check_inputs(model, tasks, options)  # before the heavy imports below: bad input fails at once

    from vtde_bench import bootstrap
    from vtde_bench.cache import EmbeddingCache
    from vtde_bench.data import load_task_data
    from vtde_bench.embed import Shard, default_workers
    from vtde_bench.evaluators import EmbedOptions, evaluate_task
    from vtde_bench.models import as_dual_encoder, load_model

    init_distributed()
    if isinstance(model, (str, Path)):
        from vtde_bench.locate import hub_model_from_cache, local_model_folder

        if local_model_folder(str(model), options.revision) is None and hub_model_from_cache(str(model), options.revision):
            progress.note(f"the Hugging Face Hub cannot be reached; loading {model} from the local hub cache")
        started = time.perf_counter()
        with progress.bar(f"Loading model {model}", total=None):
            model = load_model(
                model, revision=options.revision, trust_remote_code=options.trust_remote_code,
                device=options.device, precision=options.precision,
            )
        load_seconds = time.perf_counter() - started
    else:
        model = as_dual_encoder(model, processor=processor, device=options.device, precision=options.precision)
        load_seconds = 0.0
    versions = library_versions()
    cache = EmbeddingCache(options.cache_dir) if options.cache else None
    embed_options = EmbedOptions(options.batch_size, options.workers, options.skip_bad_images, cache, options.chunk_rows)
    shard = Shard.current()

    results = Results()
    for task in specs:
        started = time.perf_counter()
        with progress.bar(f"Loading data for {task.name}", total=None):
            data = load_task_data(task, data_dir=options.data_dir, limit=options.limit, progress=progress, cache=cache)
        data_seconds = time.perf_counter() - started
        profile = run_profile(task, model, limit=options.limit, bootstrap=options.bootstrap, bootstrap_seed=BOOTSTRAP_SEED,
                              skip_bad_images=options.skip_bad_images)
        json_path = None
        if options.output_dir is not None:
            json_path = result_path(options.output_dir, model.info.slug, task.name)
            # A model without a weights fingerprint cannot be recognised again: always evaluated.
            reusable = not options.overwrite and model.info.weights_fingerprint is not None
            existing = None if not reusable else find_existing(
                json_path, weights=model.info.weights_fingerprint, dataset=data.fingerprint, profile=profile.fingerprint,
            )
            # Rank 0's view decides for every rank, so that all ranks do the same work.
            existing = shard.gather([existing])[0]
            if existing is not None:
                progress.note(f"{task.name}: a result of these weights, data and profile exists at {json_path}; reusing it "
                              "(--overwrite to redo)")
                results.results.append(existing)
                results.skipped.append(task.name)
                results.paths[task.name] = json_path
                continue
        outcome = evaluate_task(task, model, data, embed_options, progress)
        timings = {"load_model_s": load_seconds, "load_data_s": data_seconds, **outcome.timings,
                   "task_total_s": time.perf_counter() - started}
        # Throughput of the forward passes; a run served wholly from the cache has none to report.
        all_cached = outcome.extra.get("image_chunks_from_cache") == outcome.extra.get("image_chunks")
        timings["images_per_s"] = None if all_cached else outcome.num_images / max(outcome.timings["embed_images_s"], 1e-9)
        started_ci = time.perf_counter()
        intervals = None
        if options.bootstrap > 0:
            intervals = bootstrap.intervals(task.kind, outcome.samples, task.metrics, resamples=options.bootstrap,
                                            seed=BOOTSTRAP_SEED)
        timings["bootstrap_s"] = time.perf_counter() - started_ci
        for key, message in outcome.bad_images:
            progress.note(f"{task.name}: skipped bad image {key!r} ({message})")
        for warning in outcome.warnings:
            progress.note(f"{task.name}: {warning}")
        info = model.info
        result = TaskResult(
            task=TaskRecord(name=task.name, version=task.version, type=task.type, main_metric=task.main_metric,
                            card=str(task.card_path) if task.card_path else None),
            model=ModelRecord(
                path=info.path, slug=info.slug, revision=info.revision, resolved_commit=info.resolved_commit,
                weights_fingerprint=info.weights_fingerprint, num_parameters=info.num_parameters,
                embedding_dim=info.embedding_dim, model_type=info.model_type, extra=dict(info.extra),
            ),
            dataset=DatasetRecord(
                source=task.source.describe(), hub=task.source.hub, revision=task.source.revision,
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
                cache={"enabled": cache is not None, **outcome.extra}, profile=profile,
            ),
            metrics=outcome.metrics,
            main_score=outcome.metrics[task.main_metric],
            per_class_recall=outcome.per_class_recall,
            intervals={k: (v[0], v[1]) for k, v in (intervals or {}).items()},
            warnings=tuple(outcome.warnings),
            counts=dict(outcome.counts),
            samples=outcome.samples,
        )
        if options.output_dir is not None and shard.rank == 0:
            results.paths[task.name] = write_result(result, options.output_dir)
        results.results.append(result)
    return results


def _with_overrides(options: RunOptions, overrides: dict[str, Any]) -> RunOptions:
    import difflib
    from dataclasses import fields, replace

    names = [f.name for f in fields(RunOptions)]
    for name in overrides:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UserError(f"evaluate() got an unknown option {name!r}; {hint}options are the fields of RunOptions: {', '.join(names)}")
    return replace(options, **overrides) if overrides else options


def _resolve_tasks(tasks: Sequence[str | Task] | str) -> list[Task]:
    if isinstance(tasks, (list, tuple)) and not tasks:
        raise UserError("no tasks given; name registry tasks or card files (see 'vtde-bench tasks')")
    return load_tasks(tasks)
