"""`vtde-bench download`: fetch tasks' sources for offline use."""

from __future__ import annotations

import argparse
from pathlib import Path

from vtde_bench.cli import EXIT_OK


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="fetch tasks' data for offline use",
                       description="Fetch each task's source at its pinned revision into DIR/<task>/, the --data-dir layout.")
    p.add_argument("--tasks", nargs="+", required=True, metavar="TASK", help="registry names, groups or card paths")
    p.add_argument("--to", type=Path, required=True, metavar="DIR", help="the folder to use later as --data-dir")
    p.add_argument("--overwrite", action="store_true", help="fetch again even when DIR/<task> exists")
    p.set_defaults(handler=_download)


def _download(args: argparse.Namespace) -> int:
    from vtde_bench.render import console as report
    from vtde_bench.data.download import download_task
    from vtde_bench.tasks import load_tasks

    progress = report.RichProgress()
    for task in load_tasks(args.tasks):
        path = download_task(task, args.to, overwrite=args.overwrite, progress=progress)
        report.out.print(f"{task.name}: {path}", highlight=False)
    return EXIT_OK
