"""The `vtde-bench` command: parse arguments, call the API, hand results to the report layer.

Heavy libraries (torch, transformers, datasets) are imported only inside the
subcommands that need them, so `--help` and `tasks` are instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from vtde_bench import __version__
from vtde_bench.errors import UserError, VtdeBenchError

EXIT_OK, EXIT_REGRESSION, EXIT_USER, EXIT_RUNTIME = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors are user errors: exit 2, one line
        raise UserError(f"{message} (see '{self.prog} --help')")


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="evaluate a model on tasks", description="Evaluate a dual encoder on tasks and write one result JSON per task.")
    p.add_argument("--model", required=True, help="a save_pretrained folder or a hub id (org/name)")
    p.add_argument("--revision", help="hub revision (branch, tag or commit) of --model")
    p.add_argument("--tasks", nargs="+", default=["demo"], metavar="TASK", help="registry names, groups or card paths (default: demo)")
    p.add_argument("--data-dir", type=Path, help="read task T from a local copy in DIR/T/")
    p.add_argument("--output-dir", type=Path, default=Path("results"), help="where results go (default: results/)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: 64)")
    p.add_argument("--workers", type=int, help="input-pipeline processes (default: cores - 1)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"], help="auto: bf16 on CUDA, fp32 elsewhere")
    p.add_argument("--limit", type=int, help="evaluate only the first N rows (a quick check; flagged in results)")
    p.add_argument("--skip-bad-images", action="store_true", help="skip and count images that do not decode instead of stopping")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a checkpoint's own Python code to run")
    p.add_argument("--overwrite", action="store_true", help="recompute even when a result for the same weights and data exists")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from vtde_bench import report
    from vtde_bench.runner import RunOptions, evaluate

    _quiet_libraries()

    options = RunOptions(
        output_dir=args.output_dir, data_dir=args.data_dir, batch_size=args.batch_size, workers=args.workers,
        device=args.device, precision=args.precision, limit=args.limit, skip_bad_images=args.skip_bad_images,
        overwrite=args.overwrite, revision=args.revision, trust_remote_code=args.trust_remote_code,
    )
    results = evaluate(args.model, args.tasks, options=options, progress=report.RichProgress())
    report.print_results(results, where=results.paths)
    return EXIT_OK


def _quiet_libraries() -> None:
    """Our own progress bars replace the libraries' tqdm bars and load-time chatter."""
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()


def _add_tasks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list the task registry", description="List the built-in tasks and groups.")
    p.set_defaults(handler=_tasks)


def _tasks(args: argparse.Namespace) -> int:
    from vtde_bench import report
    from vtde_bench.tasks import groups, load_card, registry

    rows = []
    for name, path in registry().items():
        task = load_card(path)
        rows.append({"name": name, "type": task.type, "source": task.source.describe() if task.source.hub else f"local: {path.parent.name}/{os.path.relpath(task.source.path, path.parent)}",
                     "split": task.source.split, "size": task.source.num_samples, "main_metric": task.main_metric})
    report.print_tasks(rows)
    report.print_groups(groups())
    return EXIT_OK


def _add_download(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="fetch tasks' data for offline use",
                       description="Fetch each task's source at its pinned revision into DIR/<task>/, the --data-dir layout.")
    p.add_argument("--tasks", nargs="+", required=True, metavar="TASK", help="registry names, groups or card paths")
    p.add_argument("--to", type=Path, required=True, metavar="DIR", help="the folder to use later as --data-dir")
    p.add_argument("--overwrite", action="store_true", help="fetch again even when DIR/<task> exists")
    p.set_defaults(handler=_download)


def _download(args: argparse.Namespace) -> int:
    from vtde_bench import report
    from vtde_bench.download import download_task
    from vtde_bench.tasks import load_tasks

    progress = report.RichProgress()
    for task in load_tasks(args.tasks):
        path = download_task(task, args.to, overwrite=args.overwrite, progress=progress)
        report.out.print(f"{task.name}: {path}", highlight=False)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vtde-bench", description="Evaluate vision-text dual encoders: zero-shot classification and image-text retrieval.")
    parser.add_argument("--version", action="version", version=f"vtde-bench {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_run(sub)
    _add_tasks(sub)
    _add_download(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USER
        return args.handler(args)
    except VtdeBenchError as e:
        if debug:
            raise
        from vtde_bench import report

        report.error(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # anything unexpected is a runtime failure, reported in one line
        if debug:
            raise
        from vtde_bench import report

        report.error(f"{type(e).__name__}: {e} (rerun with --debug for the traceback)")
        return EXIT_RUNTIME
