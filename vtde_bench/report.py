"""Everything the user sees: progress bars, result tables, the task list. The only module that prints."""

from __future__ import annotations

import contextlib
import io
from typing import Iterable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from vtde_bench.leaderboard import percent_cell as percent  # one format for every table: 12.34 ±0.5

# Logs and CI consoles are not terminals; rich would wrap them at 80 columns.
out = Console(width=None if Console().is_terminal else 160)
err = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 160)


class _RichBar:
    def __init__(self, progress: Progress, task_id: int):
        self.progress, self.task_id = progress, task_id

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task_id, n)


class RichProgress:
    """Progress bars on stderr; transient, so the final table stands alone."""

    def __init__(self, console: Console = err):
        self.console = console
        self._progress: Progress | None = None
        self._depth = 0

    @contextlib.contextmanager
    def bar(self, description: str, total: int | None) -> Iterator[_RichBar]:
        if self._progress is None:
            self._progress = Progress(
                SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
                MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                console=self.console, transient=True, disable=not self.console.is_terminal,
            )
            self._progress.start()
        self._depth += 1
        task_id = self._progress.add_task(escape(description), total=total)  # paths and names are text, not markup
        try:
            yield _RichBar(self._progress, task_id)
        finally:
            self._progress.remove_task(task_id)
            self._depth -= 1
            if self._depth == 0:
                self._progress.stop()
                self._progress = None

    def note(self, message: str) -> None:
        self.console.print(f"[yellow]•[/yellow] {escape(message)}", highlight=False, soft_wrap=True)


def short_name(metric: str) -> str:
    """A column header that fits a terminal, as the metric's kind labels it (I→T R@5)."""
    from vtde_bench.kinds import metric_label

    return metric_label(metric)


def results_table(results: Iterable) -> list[Table]:
    """One table per task kind: a row per (model, task), a column per metric, in percent."""
    from vtde_bench.kinds import find_kind

    by_type: dict[str, list] = {}
    for result in results:
        by_type.setdefault(result.task_type, []).append(result)
    tables = []
    for kind, rows in by_type.items():
        metric_names: list[str] = []
        for r in rows:
            metric_names += [m for m in r.metrics if m not in metric_names]
        definition = find_kind(kind)
        table = Table(title=f"{definition.title if definition else kind} (%)", title_justify="left")
        table.add_column("model", style="cyan")
        table.add_column("task", style="bold")
        for name in metric_names:
            table.add_column(short_name(name), justify="right")
        table.add_column("images", justify="right")
        table.add_column("img/s", justify="right")
        table.add_column("time (s)", justify="right")
        for r in rows:
            cells = []
            for name in metric_names:
                cell = percent(r.metrics.get(name), r.intervals.get(name))
                cells.append(f"[bold green]{cell}[/]" if name == r.main_metric else cell)
            flag = " (limit)" if r.limited else ""
            timings = r.run.timings
            rate, seconds = timings.get("images_per_s"), timings.get("task_total_s")
            table.add_row(r.model_name, r.task_name + flag, *cells, str(r.dataset.num_images),
                          f"{rate:.0f}" if rate else "cached", f"{seconds:.1f}" if seconds else "")
        tables.append(table)
    return tables


def print_results(results, *, where: dict | None = None) -> None:
    for table in results_table(results):
        out.print(table)
    for name, path in (where or {}).items():
        out.print(f"[dim]{name}: {path}[/dim]", highlight=False)


def print_tasks(rows: list[dict]) -> None:
    table = Table(title="vtde-bench tasks", title_justify="left")
    for column in ("name", "type", "source", "split", "size", "main metric"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for row in rows:
        table.add_row(row["name"], row["type"], row["source"], row["split"], f"{row['size']:,}", row["main_metric"])
    out.print(table)


def print_groups(groups: dict) -> None:
    """Each `vtde_bench.tasks.Group`: its tasks, and how a leaderboard aggregates them when not the defaults."""
    for name, group in groups.items():
        how = [f"{k} {v}" for k, v, default in (("aggregate", group.aggregate, "mean"), ("incomplete", group.incomplete, "unranked"))
               if v != default]
        extra = f" [dim]({escape('; '.join(how))})[/dim]" if how else ""
        out.print(f"[bold]{escape(name)}[/bold]: {escape(', '.join(group.tasks))}{extra}", highlight=False)


def error(message: str) -> None:
    err.print(f"[bold red]error:[/bold red] {message}", highlight=False, soft_wrap=True)


# ----------------------------------------------------------------------------- leaderboard and compare


def leaderboard_tables(board) -> list[Table]:
    """The leaderboard (a `vtde_bench.leaderboard.Leaderboard`) as rich tables, in percent: ranked, then flagged."""
    from vtde_bench.leaderboard import TEXT_COLUMNS, section

    styles = {"published": "dim italic", "clip_benchmark": "dim italic"}
    tables = []
    for title, rows, flagged in (("vtde-bench leaderboard (%)", board.ranked, False), ("flagged, not ranked (%)", board.flagged, True)):
        if not rows and flagged:
            continue
        titles, lines = section(board, rows, flagged=flagged)
        table = Table(title=title, title_justify="left")
        for name in titles:
            table.add_column(name, justify="left" if name in TEXT_COLUMNS else "right", style="cyan" if name == "model" else None)
        for row, values in zip(rows, lines):
            table.add_row(*map(escape, values), style="yellow" if flagged else styles.get(row.source))
        tables.append(table)
    return tables


def print_leaderboard(board) -> None:
    for table in leaderboard_tables(board):
        out.print(table)


def render_leaderboard_text(board, *, width: int = 160) -> str:
    """The rich leaderboard tables as plain text (for `--format table --output FILE`)."""
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    for table in leaderboard_tables(board):
        console.print(table)
    return console.export_text()


def print_plain(text: str) -> None:
    """Write text to stdout exactly as given (CSV, JSON, markdown, HTML): no markup, no wrapping."""
    out.file.write(text if text.endswith("\n") else text + "\n")
    out.file.flush()


def print_written(path) -> None:
    out.print(f"[dim]wrote {escape(str(path))}[/dim]", highlight=False)


def comparison_table(comparison) -> Table:
    """A `vtde_bench.compare.Comparison` as a rich table: scores in percent, delta and paired interval in points."""
    from vtde_bench.compare import interval_text

    colours = {"regressed": "bold red", "improved": "green", "not significant": "yellow", "ok": ""}
    table = Table(title=f"candidate {escape(str(comparison.candidate))} vs baseline {escape(str(comparison.baseline))} "
                        f"(tolerance {comparison.tolerance_points:g} points)", title_justify="left")
    for name in ("task", "metric", "baseline (%)", "candidate (%)", "Δ (points)", "paired 95% (points)", "verdict"):
        table.add_column(name, justify="left" if name in ("task", "metric", "verdict") else "right")
    for row in comparison.rows:
        paired = escape(interval_text(row.paired_interval))
        style = colours.get(row.verdict, "")
        table.add_row(escape(row.task), escape(short_name(row.metric)), percent(row.baseline, row.baseline_interval), percent(row.candidate, row.candidate_interval),
                      f"{row.delta:+.2f}", paired, f"[{style}]{row.verdict}[/]" if style else row.verdict)
    return table


def print_comparison(comparison) -> None:
    out.print(comparison_table(comparison))
    for note in comparison.notes:
        err.print(f"[yellow]•[/yellow] {note}", highlight=False, soft_wrap=True)
    n = len(comparison.regressions)
    if n:
        out.print(f"[bold red]{n} regression{'s' if n != 1 else ''}[/bold red]", highlight=False)
    else:
        out.print("[bold green]no regressions[/bold green]", highlight=False)
