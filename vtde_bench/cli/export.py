"""`vtde-bench export`: results in the formats people publish numbers in (a model card's model-index, the Hub's
eval-results files, open_clip's CSV), and `--push`: the same proposed as a pull request on a Hub model repo."""

from __future__ import annotations

import argparse
from pathlib import Path

from vtde_bench.cli import EXIT_OK

FORMATS = ("model-index", "eval-results", "openclip-csv")


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write results as a model card's model-index, Hub eval-results or open_clip's CSV",
                       description="Export vtde-bench results: model-index (a model card's front matter, per model; with "
                                   "--card, merged into that README.md), eval-results (the Hub's .eval_results/<task>.yaml, for "
                                   "tasks whose card names a Hub benchmark) or openclip-csv (open_clip's "
                                   "docs/openclip_results.csv columns over DataComp's 38 tasks). Values are fractions, exactly "
                                   "as the results hold them.")
    p.add_argument("results", nargs="+", type=Path, metavar="RESULTS", help="result folders or files (ours)")
    p.add_argument("--format", required=True, choices=FORMATS, help="model-index, eval-results or openclip-csv")
    p.add_argument("--to", type=Path, metavar="DIR", help="the folder to write into (required but with --push)")
    p.add_argument("--card", type=Path, metavar="README.md", help="model-index: merge into this model card (one model)")
    p.add_argument("--push", metavar="REPO", help="model-index or eval-results: propose the files as a pull request on this "
                                                  "Hub model repo (prints the diff; opens it only with --yes)")
    p.add_argument("--yes", action="store_true", help="with --push: open the pull request (token from HF_TOKEN)")
    p.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from vtde_bench.errors import UserError
    from vtde_bench.files import atomic_write
    from vtde_bench.render import console as report
    from vtde_bench.results import read_task_results
    from vtde_bench.results import exports

    models = exports.by_model(read_task_results(args.results))
    limited = [r for results in models.values() for r in results if r.limited]
    if limited:
        raise UserError(f"{limited[0].path} is a --limit run (a quick check of {limited[0].limit} rows), not a number to "
                        "publish; export full runs only")
    written: list[Path] = []
    if args.to is None and args.push is None:
        raise UserError("--to DIR is required: the folder to write the export into (or --push REPO)")
    if args.push is not None:
        if args.format == "openclip-csv":
            raise UserError("--push applies to model-index and eval-results (a model repo's card or .eval_results/)")
        if len(models) > 1:
            raise UserError(f"--push proposes one model's results; these hold {len(models)} ({', '.join(models)})")
        from vtde_bench.results import push

        ((model, results),) = models.items()
        files = _repo_files(args, model, results, exports, report)
        proposal = push.propose(args.push, files)
        report.print_plain(proposal.diff or f"{args.push}: nothing would change")
        if args.yes and proposal.changed:
            report.print_plain(f"opened {push.open_pull_request(args.push, proposal, model)}")
        elif proposal.changed:
            report.print_plain(f"(a dry run: add --yes to open this as a pull request on {args.push})")
        return EXIT_OK
    if args.format == "eval-results":
        if args.card is not None:
            raise UserError("--card applies to --format model-index")
        for model, results in models.items():
            files, skipped = exports.eval_result_files(results)
            for note in skipped:
                report.print_note(note)
            written += [_write(args.to / model / ".eval_results" / name, text, atomic_write) for name, text in files.items()]
    elif args.format == "openclip-csv":
        if args.card is not None:
            raise UserError("--card applies to --format model-index")
        from vtde_bench.tasks import groups

        text = exports.openclip_csv(models, groups()["datacomp"])
        written.append(_write(args.to / "openclip_results.csv", text, atomic_write))
    else:
        import yaml

        if args.card is not None and len(models) > 1:
            raise UserError(f"--card merges one model's results; these hold {len(models)} ({', '.join(models)})")
        for model, results in models.items():
            block = exports.model_index(model, results)
            written.append(_write(args.to / model / "model-index.yaml", yaml.safe_dump(block, sort_keys=False), atomic_write))
            if args.card is not None:
                merged = exports.merged_card(_read_card(args.card), model, results, where=f"--card {args.card}")
                written.append(_write(args.to / model / "README.md", merged, atomic_write))
    for path in written:
        report.print_written(path)
    return EXIT_OK


def _write(path: Path, text: str, atomic_write) -> Path:
    data = text.encode("utf-8")
    atomic_write(path, lambda f: f.write(data), where="--to")
    return path


def _repo_files(args: argparse.Namespace, model: str, results, exports, report) -> dict[str, str]:
    """The files `--push` proposes: the merged README.md (model-index; the repo's own card, or --card), or the
    .eval_results/ files (eval-results)."""
    from vtde_bench.results import push

    if args.format == "model-index":
        card = _read_card(args.card) if args.card is not None else push.current_card(args.push)
        return {"README.md": exports.merged_card(card, model, results, where=f"{args.push}'s README.md")}
    files, skipped = exports.eval_result_files(results)
    for note in skipped:
        report.print_note(note)
    return {f".eval_results/{name}": text for name, text in files.items()}


def _read_card(path: Path) -> str:
    from vtde_bench.errors import UserError

    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--card {path}: cannot read it ({e})") from None
