"""`vtde-bench tasks`: list the registry. Imports neither torch, transformers nor datasets."""

from __future__ import annotations

import argparse
import os

from vtde_bench.cli import EXIT_OK


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list the task registry", description="List the built-in tasks and groups.")
    p.set_defaults(handler=_tasks)


def task_row(name: str, task, path) -> dict:
    """A card's row of the listing: its source is the hub repo at its revision (marked "(unpinned)" where the
    revision is a branch), or its local folder."""
    source = task.source.describe() if task.source.hub else "local: " + os.path.relpath(task.source.path, path.parent.parent)
    return {"name": name, "type": task.type, "source": source, "split": task.source.split,
            "size": task.source.num_samples, "main_metric": task.main_metric}


def _tasks(args: argparse.Namespace) -> int:
    from vtde_bench.render import console as report
    from vtde_bench.tasks import groups, load_card, registry

    report.print_tasks([task_row(name, load_card(path), path) for name, path in registry().items()])
    report.print_groups(groups())
    return EXIT_OK
