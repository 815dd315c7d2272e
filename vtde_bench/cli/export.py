"""`vtde-bench export`: results in the formats people publish numbers in (a model card's model-index, open_clip's CSV)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vtde_bench.cli import EXIT_OK

FORMATS = ("model-index", "openclip-csv")


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write results as a model card's model-index or open_clip's results CSV",
                       description="Export vtde-bench results: model-index (a model card's front matter, per model; with "
                                   "--card, merged into that README.md) or openclip-csv (open_clip's docs/openclip_results.csv "
                                   "columns over DataComp's 38 tasks). Values are fractions, exactly as the results hold them.")
    p.add_argument("results", nargs="+", type=Path, metavar="RESULTS", help="result folders or files (ours)")
    p.add_argument("--format", required=True, choices=FORMATS, help="model-index or openclip-csv")
    p.add_argument("--to", required=True, type=Path, metavar="DIR", help="the folder to write into")
    p.add_argument("--card", type=Path, metavar="README.md", help="model-index: merge into this model card (one model)")
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
    if args.format == "openclip-csv":
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
                written.append(_write(args.to / model / "README.md", exports.merged_card(args.card, model, results),
                                      atomic_write))
    for path in written:
        report.print_written(path)
    return EXIT_OK


def _write(path: Path, text: str, atomic_write) -> Path:
    data = text.encode("utf-8")
    atomic_write(path, lambda f: f.write(data), where="--to")
    return path
