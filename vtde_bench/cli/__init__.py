"""The `vtde-bench` command: parse arguments, call the API, hand what comes back to `render`.

Heavy libraries (torch, transformers, datasets) are imported only inside the
subcommands that need them, so `--help` and `tasks` are instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vtde_bench import __version__
from vtde_bench.errors import Interrupted, UserError, VtdeBenchError

EXIT_OK, EXIT_REGRESSION, EXIT_USER, EXIT_RUNTIME = 0, 1, 2, 3
SUBCOMMANDS = ("run", "tasks", "download", "cache", "leaderboard", "compare", "export", "convert", "demo")  # one module each in this package, with add(subparsers)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors are user errors: exit 2, one line
        raise UserError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vtde-bench", description="Evaluate vision-text dual encoders: zero-shot classification and image-text retrieval.")
    parser.add_argument("--version", action="version", version=f"vtde-bench {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in SUBCOMMANDS:
        importlib.import_module(f"vtde_bench.cli.{name}").add(sub)
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
        from rich.markup import escape

        from vtde_bench.render import console as report

        report.error(escape(str(e)))  # a message may hold '[source]' or a path with brackets: text, not rich markup
        return e.exit_code
    except KeyboardInterrupt as e:
        from rich.markup import escape

        from vtde_bench.render import console as report

        report.error(escape(str(e) if isinstance(e, Interrupted) else "interrupted"))
        return 130
    except Exception as e:  # anything unexpected is a runtime failure, reported in one line
        if debug:
            raise
        from rich.markup import escape

        from vtde_bench.render import console as report

        report.error(escape(f"{type(e).__name__}: {e} (rerun with --debug for the traceback)"))
        return EXIT_RUNTIME
