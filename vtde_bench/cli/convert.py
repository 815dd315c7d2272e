"""`vtde-bench convert`: write a Flax-only checkpoint folder as a PyTorch one."""

from __future__ import annotations

import argparse
from pathlib import Path

from vtde_bench.cli import EXIT_OK


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert", help="convert a Flax checkpoint folder to PyTorch (safetensors)",
        description="Convert a folder with config.json and Flax weights (flax_model.msgpack, or sharded with its index) "
                    "into a PyTorch checkpoint folder: safetensors weights, config and processor files. "
                    "Supports vision-text-dual-encoder, clip and hybrid-clip checkpoints; needs neither jax nor flax.",
    )
    p.add_argument("folder", type=Path, metavar="FOLDER", help="the Flax checkpoint folder")
    p.add_argument("--to", type=Path, required=True, metavar="OUT", help="the new PyTorch checkpoint folder")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(handler=_convert)


def _convert(args: argparse.Namespace) -> int:
    import transformers

    from vtde_bench.render import console as report
    from vtde_bench.encoders.flax import convert

    # The conversion reports problems itself (as one-line errors); keep transformers' load chatter out.
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    out = convert(args.folder, args.to, overwrite=args.overwrite)
    report.out.print(f"{args.folder} -> {out}", highlight=False)
    return EXIT_OK
