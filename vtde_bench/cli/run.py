"""`vtde-bench run`: evaluate a model on tasks."""

from __future__ import annotations

import argparse
from pathlib import Path

from vtde_bench.cli import EXIT_OK


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="evaluate a model on tasks", description="Evaluate a dual encoder on tasks and write one result JSON per task.")
    p.add_argument("--model", required=True, help="a save_pretrained folder or a hub id (org/name)")
    p.add_argument("--revision", help="hub revision (branch, tag or commit) of --model")
    p.add_argument("--tasks", nargs="+", default=["demo"], metavar="TASK", help="registry names, groups or card paths (default: demo)")
    p.add_argument("--data-dir", type=Path, help="read task T from a local copy in DIR/T/")
    p.add_argument("--output-dir", type=Path, default=Path("results"), help="where results go (default: results/)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: 64)")
    p.add_argument("--workers", type=int, help="input-pipeline processes (default: one per core, at most 8; 0 decodes in the main process)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"], help="auto: bf16 on CUDA, fp32 elsewhere")
    p.add_argument("--limit", type=int, help="evaluate only the first N rows (a quick check; flagged in results)")
    p.add_argument("--skip-bad-images", action="store_true", help="skip and count images that do not decode instead of stopping")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a checkpoint's own Python code to run")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="resamples for 95%% intervals (default 1000; 0: none)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the embedding cache")
    p.add_argument("--cache-dir", type=Path, help="embedding cache folder (default: $VTDE_BENCH_CACHE or ~/.cache/vtde-bench/embeddings)")
    p.add_argument("--chunk-rows", type=int, default=1024, metavar="N", help="rows per cached, resumable chunk of work (default 1024)")
    p.add_argument("--overwrite", action="store_true", help="recompute even when a result for the same weights, data and profile exists")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import os

    from vtde_bench import report
    from vtde_bench.progress import NullProgress
    from vtde_bench.runner import RunOptions, check_inputs, evaluate

    options = RunOptions(
        output_dir=args.output_dir, data_dir=args.data_dir, batch_size=args.batch_size, workers=args.workers,
        device=args.device, precision=args.precision, limit=args.limit, skip_bad_images=args.skip_bad_images,
        overwrite=args.overwrite, revision=args.revision, bootstrap=args.bootstrap,
        cache=not args.no_cache, cache_dir=args.cache_dir, chunk_rows=args.chunk_rows, trust_remote_code=args.trust_remote_code,
    )
    specs = check_inputs(args.model, args.tasks, options)  # before the libraries load: a typo fails at once
    quiet_libraries()
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
