"""`vtde-bench demo`: train a small dual encoder on the built-in shapes data and evaluate it against an untrained copy."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from vtde_bench.cli import EXIT_OK


def demo_home() -> Path:
    """Where the demo checkpoints live: `$XDG_CACHE_HOME/vtde-bench/demo` (or ~/.cache/...)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vtde-bench" / "demo"


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train the demo model and evaluate it (offline, CPU, about a minute)",
                       description="Train a small VisionTextDualEncoderModel on the built-in shapes data (once, cached), "
                                   "then evaluate it and an untrained copy on the two built-in tasks.")
    p.add_argument("--retrain", action="store_true", help="train again even when a trained checkpoint is cached")
    p.add_argument("--home", type=Path, help="checkpoint folder (default: ~/.cache/vtde-bench/demo)")
    p.add_argument("--output-dir", type=Path, default=Path("results"), help="where results go (default: results/)")
    p.add_argument("--workers", type=int, help="input-pipeline processes (default: one per core)")
    p.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from vtde_bench.render import console as report
    from vtde_bench.cli.run import quiet_libraries
    from vtde_bench.demo import save_untrained_demo_model, train_demo_model
    from vtde_bench.api import RunOptions, evaluate

    quiet_libraries()
    home = args.home or demo_home()
    trained, untrained = home / "vtde-demo-trained", home / "vtde-demo-untrained"
    progress = report.RichProgress()
    if args.retrain or not (trained / "config.json").is_file():
        train_demo_model(trained, progress=progress)
    else:
        progress.note(f"using the trained demo model cached at {trained} (--retrain to train again)")
    if not (untrained / "config.json").is_file():
        save_untrained_demo_model(untrained)
    options = RunOptions(output_dir=args.output_dir, workers=args.workers)
    results = []
    for checkpoint in (trained, untrained):
        results += list(evaluate(str(checkpoint), "demo", options=options, progress=progress))
    report.print_results(results)
    report.out.print(f"checkpoints: {trained} and {untrained}", highlight=False)
    report.out.print(f"results: {Path(args.output_dir).resolve()}/<model>/<task>.json, with per-sample .parquet files", highlight=False)
    report.out.print(f"next: vtde-bench run --model {trained} --tasks shapes-classification shapes-retrieval", highlight=False)
    return EXIT_OK
