"""The Python API: `evaluate` a model on tasks with `RunOptions`, and get `Results`. The CLI is a thin layer over it.

`evaluate` checks the inputs (cheaply, before any heavy library loads), loads the model once,
and hands each task to the engine (`engine.run_task`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vtde_bench.dist import init_distributed
from vtde_bench.errors import UserError
from vtde_bench.options import RunOptions
from vtde_bench.progress import NullProgress, Progress
from vtde_bench.results import TaskResult, write_result
from vtde_bench.tasks import Task, load_tasks

__all__ = ["Results", "RunOptions", "check_inputs", "evaluate", "init_distributed"]


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

        from vtde_bench.render.console import results_table

        return Group(*results_table(self.results))

    def write(self, output_dir: str | Path) -> dict[str, Path]:
        """Write every result (JSON and per-sample file) under `output_dir`, as `run` does."""
        return {r.task_name: write_result(r, output_dir) for r in self.results}

    def to_dataframe(self):
        """One row per (model, task, metric), values as fractions: the columns of `vtde_bench.load_results`."""
        from vtde_bench.results import results_frame

        return results_frame(self.results)


def check_inputs(model: Any, tasks: Sequence[str | Task] | str, options: RunOptions) -> list[Task]:
    """The checks that need no model and no data: options, task names and cards, a local model folder.

    Cheap (no torch, transformers or datasets), so a mistyped argument fails in a fraction of a
    second. Returns the task specs.

    Raises:
        UserError: what is wrong, and how to fix it.
    """
    from vtde_bench.encoders.checkpoints import hub_model_from_cache, local_model_folder, wants_open_clip

    _check_options(options)
    specs = _resolve_tasks(tasks)
    if isinstance(model, (str, Path)) and wants_open_clip(str(model), options.pretrained):
        return specs  # open_clip's loader checks its own inputs
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

    Under torchrun, call `init_distributed()` first (the CLI does): the ranks then share the work.

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

    from vtde_bench import engine
    from vtde_bench.cache import EmbeddingCache
    from vtde_bench.dist import Shard
    from vtde_bench.encoders.load import as_dual_encoder, load_model
    from vtde_bench.evaluators import Context

    shard = Shard.current()
    cache = EmbeddingCache(options.cache_dir) if options.cache else None
    started = time.perf_counter()
    if not isinstance(model, (str, Path)):
        encoder = as_dual_encoder(model, processor=processor, device=options.device, precision=options.precision)
    else:
        with progress.bar(f"Loading model {model}", total=None):
            encoder = load_model(model, revision=options.revision, trust_remote_code=options.trust_remote_code,
                                 device=options.device, precision=options.precision, pretrained=options.pretrained,
                                 text_normalize=options.text_normalize, cache=cache, decode=options.decode)
        if "loaded_from" in encoder.info.extra:
            progress.note(f"the Hugging Face Hub cannot be reached; loaded {model} from the local hub cache")
    load_model_s = time.perf_counter() - started if isinstance(model, (str, Path)) else 0.0
    context = Context(options, cache, progress)
    versions = engine.library_versions()
    results = Results()
    for task in specs:
        done = engine.run_task(task, encoder, context, shard=shard, load_model_s=load_model_s, versions=versions)
        results.results.append(done.result)
        if done.reused:
            results.skipped.append(task.name)
        if done.path is not None:
            results.paths[task.name] = done.path
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
