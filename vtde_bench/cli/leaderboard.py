"""`vtde-bench leaderboard`: rank models over result folders, with published reference rows."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from vtde_bench.cli import EXIT_OK

if TYPE_CHECKING:
    from vtde_bench.tasks import Group

FORMATS = ("table", "markdown", "csv", "json", "html")


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="a models x tasks table of main scores, averages and ranks",
                       description="Rank models by their results. Runs made with --limit, or on another task version or "
                                   "dataset than the rest, are flagged and not ranked. Published rows are labelled.")
    p.add_argument("results", nargs="*", type=Path, default=[Path("results")], metavar="RESULTS",
                   help="result folders (searched recursively) or result JSON files, ours or CLIP_benchmark's (default: results/)")
    p.add_argument("--format", default="table", choices=FORMATS, help="table (default), markdown, csv, json (fractions) or html")
    p.add_argument("--output", type=Path, metavar="FILE", help="write to FILE instead of the terminal")
    p.add_argument("--no-published", action="store_true", help="leave out the published reference rows")
    p.add_argument("--group", metavar="NAME", help="rank and average over this task group's tasks, as groups.toml says "
                                                  "(default: every task of a full run given; rows missing one are not ranked)")
    p.set_defaults(handler=_leaderboard)


def _leaderboard(args: argparse.Namespace) -> int:
    from vtde_bench.analysis import leaderboard
    from vtde_bench.render import console as report
    from vtde_bench.render import leaderboard as formats
    from vtde_bench.files import atomic_write
    from vtde_bench.results import load_rows, published_results

    group = _group(args.group) if args.group is not None else None  # a typo fails before any result is read
    records = load_rows(args.results)
    if not records:
        from vtde_bench.errors import UserError

        raise UserError(f"no results in {' '.join(map(str, args.results))}; run 'vtde-bench run' first or name result folders")
    board = leaderboard.build(records + ([] if args.no_published else published_results()), group=group)
    if args.format == "table" and args.output is None:
        report.print_leaderboard(board)
        return EXIT_OK
    if args.format == "html":
        from vtde_bench.render.html import to_html

        text = to_html(board)
    elif args.format == "table":
        text = report.render_leaderboard_text(board)
    else:
        text = {"markdown": formats.to_markdown, "csv": formats.to_csv, "json": formats.to_json}[args.format](board)
    if args.output is None:
        report.print_plain(text)
    else:
        data = text.encode("utf-8")
        atomic_write(args.output, lambda f: f.write(data), where="--output path")
        report.print_written(args.output)
    return EXIT_OK


def _group(name: str) -> "Group":
    import difflib

    from vtde_bench.errors import UserError
    from vtde_bench.tasks import groups

    known = groups()
    if name not in known:
        hint = difflib.get_close_matches(name, list(known), n=1)
        fix = f"did you mean '{hint[0]}'?" if hint else f"groups: {', '.join(known)}"
        raise UserError(f"--group {name!r} is not a task group; {fix}")
    return known[name]
