"""`vtde-bench run`: evaluate a model on tasks. Its flags are `RunOptions`' fields, with their defaults and help."""

from __future__ import annotations

import argparse
from dataclasses import MISSING

from vtde_bench.cli import EXIT_OK
from vtde_bench.options import RunOptions, option_fields


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="evaluate a model on tasks", description="Evaluate a dual encoder on tasks and write one result JSON per task.")
    p.add_argument("--model", required=True, help="a save_pretrained folder or a hub id (org/name)")
    p.add_argument("--tasks", nargs="+", default=["demo"], metavar="TASK", help="registry names, groups or card paths (default: demo)")
    for f in option_fields():
        meta = dict(f.metadata)
        flag = meta.pop("flag", "--" + f.name.replace("_", "-"))
        help_text = meta.pop("help")
        if f.type in (bool, "bool"):
            # A flag that turns on what is off by default, or (`--no-cache`) off what is on.
            action = "store_false" if f.default is True else "store_true"
            p.add_argument(flag, dest=f.name, action=action, help=help_text)
            continue
        default = f.default if f.default is not MISSING else None
        shown = f" (default: {default})" if default is not None and "default:" not in help_text else ""
        p.add_argument(flag, dest=f.name, default=default, help=help_text + shown, **meta)
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import os

    from vtde_bench.render import console as report
    from vtde_bench.api import check_inputs, evaluate
    from vtde_bench.dist import init_distributed
    from vtde_bench.progress import NullProgress

    options = RunOptions(**{f.name: getattr(args, f.name) for f in option_fields()})
    specs = check_inputs(args.model, args.tasks, options)  # before the libraries load: a typo fails at once
    quiet_libraries()
    init_distributed()  # under torchrun: join the process group, so that the ranks share the work
    lead = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 shows anything
    results = evaluate(args.model, specs, options=options, progress=report.RichProgress() if lead else NullProgress())
    if lead:
        report.print_results(results, where=results.paths)
    return EXIT_OK


def quiet_libraries() -> None:
    """Our own progress bars replace the libraries' tqdm bars and load-time chatter."""
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()
