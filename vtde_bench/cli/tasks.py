"""`vtde-bench tasks`: list the registry. Imports neither torch, transformers nor datasets."""

from __future__ import annotations

import argparse
import os

from vtde_bench.cli import EXIT_OK


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list the task registry", description="List the built-in tasks and groups.")
    p.set_defaults(handler=_tasks)


def _tasks(args: argparse.Namespace) -> int:
    from vtde_bench.render import console as report
    from vtde_bench.tasks import groups, load_card, registry

    rows = []
    for name, path in registry().items():
        task = load_card(path)
        source = task.source.describe() if task.source.hub else "local: " + os.path.relpath(task.source.path, path.parent.parent)
        rows.append({"name": name, "type": task.type, "source": source, "split": task.source.split,
                     "size": task.source.num_samples, "main_metric": task.main_metric})
    report.print_tasks(rows)
    report.print_groups(groups())
    return EXIT_OK
