"""`vtde-bench compare`: the regression gate. Exit 0 nothing regressed, 1 something did, 2 bad input, 3 runtime failure."""

from __future__ import annotations

import argparse
from pathlib import Path

from vtde_bench.cli import EXIT_OK, EXIT_REGRESSION


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare a candidate's results with a baseline's (a CI gate)",
                       description="Compare a candidate model's results with a baseline's, task by task. Exit 0: nothing "
                                   "regressed; 1: a metric dropped by more than the tolerance; 2: bad input; 3: runtime failure.")
    p.add_argument("candidate", nargs="+", type=Path, metavar="CANDIDATE", help="the candidate's result folder or files (one model)")
    p.add_argument("--baseline", nargs="+", type=Path, required=True, metavar="BASELINE", help="the baseline's result folder or files (one model)")
    p.add_argument("--tolerance", type=float, default=0.5, metavar="T",
                   help="allowed drop in percentage points, absolute (default 0.5): regressed when baseline - candidate > T")
    p.add_argument("--metrics", default="main", choices=["main", "all"], help="each task's main metric (default) or all metrics")
    p.add_argument("--paired", action="store_true",
                   help="with the same dataset, also require the paired bootstrap interval of the difference to lie below zero")
    p.add_argument("--force", action="store_true", help="compare even across task versions or dataset fingerprints")
    p.add_argument("--junit-xml", type=Path, metavar="FILE", help="write one JUnit test case per task and metric")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="write a markdown summary (for a pull-request comment)")
    p.set_defaults(handler=_compare)


def _compare(args: argparse.Namespace) -> int:
    from vtde_bench.render import console as report
    from vtde_bench.analysis.compare import compare
    from vtde_bench.render.compare import write_junit_xml, write_markdown

    comparison = compare(args.candidate, args.baseline, tolerance_points=args.tolerance, metrics=args.metrics,
                         paired=args.paired, force=args.force)
    report.print_comparison(comparison)
    for path, write in ((args.junit_xml, write_junit_xml), (args.markdown, write_markdown)):
        if path is not None:
            report.print_written(write(comparison, path))
    return EXIT_REGRESSION if comparison.regressed else EXIT_OK
