"""Reproduce open_clip's published numbers for a CLIP checkpoint with vtde-bench (needs network, or --data-dir).

    python scripts/reproduce_published.py                       # openai/clip-vit-base-patch32, all five tasks
    python scripts/reproduce_published.py --data-dir /data/vtde # local copies from `vtde-bench download`

Prints published vs measured for each headline number and exits 1 when any differs
by more than the tolerance (0.3 points by default). The reference numbers ship with
vtde-bench (vtde_bench/reference/published.json) and name their source.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

HEADLINE = (
    ("imagenet1k", "acc1"),
    ("cifar10", "acc1"),
    ("cifar100", "acc1"),
    ("mscoco", "text_to_image_recall@1"),
    ("mscoco", "image_to_text_recall@1"),
    ("flickr30k", "text_to_image_recall@1"),
    ("flickr30k", "image_to_text_recall@1"),
)


@dataclass(frozen=True)
class Check:
    task: str
    metric: str
    published: float  # fraction
    measured: float | None  # fraction; None when the task was not run

    @property
    def delta_points(self) -> float | None:
        return None if self.measured is None else 100 * (self.measured - self.published)

    def ok(self, tolerance_points: float) -> bool:
        # Round to 1e-9 points so a delta of exactly the tolerance passes despite float noise.
        return self.delta_points is not None and round(abs(self.delta_points), 9) <= tolerance_points


def compare(measured: dict[str, dict[str, float]], published: dict[str, dict[str, float]]) -> list[Check]:
    """One check per headline number that has a published value; `measured` is {task: {metric: fraction}}."""
    return [
        Check(task, metric, published[task][metric], measured.get(task, {}).get(metric))
        for task, metric in HEADLINE
        if metric in published.get(task, {})
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="openai/clip-vit-base-patch32")
    parser.add_argument("--revision")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--output-dir", type=Path, default=Path("results"))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--tolerance", type=float, default=0.3, help="allowed |difference| in percentage points")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from vtde_bench import RunOptions, evaluate
    from vtde_bench.reference import published_for, published_source
    from vtde_bench.render.console import RichProgress

    published = published_for(args.model)
    options = RunOptions(output_dir=args.output_dir, data_dir=args.data_dir, batch_size=args.batch_size, revision=args.revision)
    results = evaluate(args.model, "standard", options=options, progress=RichProgress())
    checks = compare({r.task_name: r.metrics for r in results}, published)

    table = Table(title=f"{args.model}: published vs measured (%)", caption=published_source())
    for column in ("task", "metric", "published", "measured", "delta", "within"):
        table.add_column(column, justify="left" if column in ("task", "metric") else "right")
    for c in checks:
        measured = "" if c.measured is None else f"{100 * c.measured:.2f}"
        delta = "" if c.delta_points is None else f"{c.delta_points:+.2f}"
        table.add_row(c.task, c.metric, f"{100 * c.published:.2f}", measured, delta, "yes" if c.ok(args.tolerance) else "[red]no[/red]")
    Console().print(table)
    return 0 if all(c.ok(args.tolerance) for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
