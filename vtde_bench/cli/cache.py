"""`vtde-bench cache info|clear`: look at or empty the embedding cache."""

from __future__ import annotations

import argparse
from pathlib import Path

from vtde_bench.cli import EXIT_OK


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="show or clear the embedding cache", description="Show or clear the embedding cache.")
    p.add_argument("action", choices=["info", "clear"])
    p.add_argument("--cache-dir", type=Path, help="default: $VTDE_BENCH_CACHE or ~/.cache/vtde-bench/embeddings")
    p.set_defaults(handler=_cache)


def _cache(args: argparse.Namespace) -> int:
    from vtde_bench.render import console as report
    from vtde_bench.cache import EmbeddingCache

    cache = EmbeddingCache(args.cache_dir)
    if args.action == "clear":
        freed = cache.clear()
        report.out.print(f"cleared {cache.root} ({freed / 1e6:.1f} MB freed)", highlight=False)
    else:
        info = cache.info()
        report.out.print(f"{info['root']}: {info['entries']} entries, {info['chunks']} chunks, "
                         f"image hashes of {info['image_hash_sets']} datasets, {info['bytes'] / 1e6:.1f} MB", highlight=False)
    return EXIT_OK
