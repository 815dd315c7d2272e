"""Everything the user sees: progress bars, result tables, the task list. The only module that prints."""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from rich.console import Console, ConsoleOptions, RenderResult
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from vtde_bench.render.leaderboard import percent_cell as percent  # one format for every table: 12.34 ±0.5

# Files, pipes, logs and CI consoles are not terminals: no width limit there (rich would wrap them at 80
# columns); in a terminal, tables take the shape that fits it (`Fitted`).
UNLIMITED = 100_000
out = Console(width=None if Console().is_terminal else UNLIMITED)
err = Console(stderr=True, width=None if Console(stderr=True).is_terminal else UNLIMITED)


@dataclass(frozen=True)
class Col:
    name: str
    right: bool = False  # numbers are right-aligned
    style: str | None = None
    optional: bool = False  # dropped first when the table does not fit (throughput, timings)
    key: bool = False  # names the row (model, task): kept on every line of the long shape


@dataclass
class Fitted:
    """A table drawn in the first of its shapes that fits the width it is drawn in, so that no number or name is
    ever cut: whole; without its optional columns; then long (still without them): two columns, each row's
    key cells (model, task) on lines of their own, then a line per (column, value). Where even the long shape
    is too wide, text folds onto more lines instead of being cut."""

    title: str
    columns: list[Col]
    rows: list[list[str]]  # cells as rich markup
    row_styles: list[str | None] = field(default_factory=list)
    long_names: tuple[str, str] = ("metric", "value")

    def table(self, *, optional: bool = True) -> Table:
        keep = [i for i, c in enumerate(self.columns) if optional or not c.optional]
        table = Table(title=self.title, title_justify="left")
        for i in keep:
            c = self.columns[i]
            table.add_column(c.name, justify="right" if c.right else "left", style=c.style, no_wrap=True)
        for n, row in enumerate(self.rows):
            table.add_row(*(row[i] for i in keep), style=self.row_styles[n] if n < len(self.row_styles) else None)
        return table

    def long(self) -> Table:
        keys = [i for i, c in enumerate(self.columns) if c.key]
        table = Table(title=self.title, title_justify="left")
        table.add_column(self.long_names[0], overflow="fold")
        table.add_column(self.long_names[1], justify="right", overflow="fold")
        for n, row in enumerate(self.rows):
            style = self.row_styles[n] if n < len(self.row_styles) else None
            for k in keys:  # the row's name, a line per key column, so that no name need share a line
                if row[k] != "":
                    table.add_row(f"[{self.columns[k].style or 'bold'}]{row[k]}[/]", "", style=style)
            values = [(c.name, row[i]) for i, c in enumerate(self.columns) if not c.key and not c.optional and row[i] != ""]
            for j, (name, value) in enumerate(values):
                table.add_row("  " + escape(name), value, style=style, end_section=j == len(values) - 1)
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        unbounded = options.update(max_width=UNLIMITED)
        for shape in (self.table(), self.table(optional=False)):
            if Measurement.get(console, unbounded, shape).maximum <= options.max_width:
                yield shape
                return
        yield self.long()

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.table())


class _RichBar:
    def __init__(self, progress: Progress, task_id: int):
        self.progress, self.task_id = progress, task_id

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task_id, n)

    def skip(self, n: int) -> None:
        self.progress.advance(self.task_id, n)


class _LineBar:
    """Progress as lines of text, for a log: every `every_s` seconds the count, the rate and the time left."""

    def __init__(self, progress: "RichProgress", description: str, total: int | None):
        self.progress, self.description, self.total = progress, description, total
        self.done = self.skipped = 0
        self.started = self.last = time.monotonic()

    def skip(self, n: int) -> None:
        self.done += n
        self.skipped += n

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.progress.every_s:
            self.last = now
            self.progress.line(f"{self.description}: {self.count()}{self.rate(now)}")

    def count(self) -> str:
        if not self.total:
            return f"{self.done:,}"
        return f"{self.done:,}/{self.total:,} ({100 * self.done / self.total:.0f}%)"

    def rate(self, now: float, *, eta: bool = True) -> str:
        elapsed, worked = now - self.started, self.done - self.skipped
        if elapsed <= 0 or worked == 0:
            return ""
        per_s = worked / elapsed
        left = f", ETA {_clock((self.total - self.done) / per_s)}" if self.total and eta else ""
        return f", {per_s:,.0f}/s{left}"

    def close(self) -> None:
        now = time.monotonic()
        if self.total or self.done:
            self.progress.line(f"{self.description}: done, {self.count()} in {now - self.started:.1f} s{self.rate(now, eta=False)}")


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class RichProgress:
    """Progress on stderr. In a terminal, bars, transient so that the final table stands alone; elsewhere (a log,
    CI), a line per stage and, every `every_s` seconds, a line with the count, the rate and the time left."""

    def __init__(self, console: Console = err, *, every_s: float = 10.0):
        self.console = console
        self.every_s = every_s
        self._progress: Progress | None = None
        self._depth = 0

    def line(self, message: str) -> None:
        self.console.print(escape(message), highlight=False, soft_wrap=True)

    @contextlib.contextmanager
    def bar(self, description: str, total: int | None) -> Iterator[_RichBar | _LineBar]:
        if not self.console.is_terminal:
            self.line(f"{description} ...")
            bar = _LineBar(self, description, total)
            try:
                yield bar
            finally:
                bar.close()
            return
        if self._progress is None:
            self._progress = Progress(
                SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
                MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                console=self.console, transient=True,
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


def results_table(results: Iterable) -> list[Fitted]:
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
        columns = [Col("model", style="cyan", key=True), Col("task", style="bold", key=True),
                   *(Col(short_name(name), right=True) for name in metric_names),
                   Col("images", right=True), Col("img/s", right=True, optional=True), Col("time (s)", right=True, optional=True)]
        lines = []
        for r in rows:
            cells = []
            for name in metric_names:
                cell = percent(r.metrics.get(name), r.intervals.get(name))
                cells.append(f"[bold green]{cell}[/]" if name == r.main_metric else cell)
            flag = " (limit)" if r.limited else ""
            timings = r.run.timings
            rate, seconds = timings.get("images_per_s"), timings.get("task_total_s")
            lines.append([escape(r.model_name), escape(r.task_name + flag), *cells, str(r.dataset.num_images),
                          f"{rate:.0f}" if rate else "cached", f"{seconds:.1f}" if seconds else ""])
        tables.append(Fitted(f"{definition.title if definition else kind} (%)", columns, lines))
    return tables


def print_results(results, *, where: dict | None = None) -> None:
    for table in results_table(results):
        out.print(table)
    for name, path in (where or {}).items():
        out.print(f"[dim]{name}: {path}[/dim]", highlight=False)


def print_tasks(rows: list[dict]) -> None:
    columns = [Col("name", style="bold", key=True), Col("type"), Col("source"), Col("split"), Col("size", right=True),
               Col("main metric")]
    lines = [[escape(row["name"]), escape(row["type"]), escape(row["source"]), escape(row["split"]), f"{row['size']:,}",
              escape(row["main_metric"])] for row in rows]
    out.print(Fitted("vtde-bench tasks", columns, lines, long_names=("field", "value")))


def print_groups(groups: dict) -> None:
    """Each `vtde_bench.tasks.Group`: its tasks, and how a leaderboard aggregates them when not the defaults."""
    for name, group in groups.items():
        how = [f"{k} {v}" for k, v, default in (("aggregate", group.aggregate, "mean"), ("incomplete", group.incomplete, "unranked"))
               if v != default]
        if group.pending:
            how.append("pending, no card yet: " + ", ".join(group.pending))
        if group.categories:
            how.append("categories: " + ", ".join(group.categories))
        extra = f" [dim]({escape('; '.join(how))})[/dim]" if how else ""
        out.print(f"[bold]{escape(name)}[/bold]: {escape(', '.join(group.tasks))}{extra}", highlight=False)


def error(message: str) -> None:
    err.print(f"[bold red]error:[/bold red] {message}", highlight=False, soft_wrap=True)


# ----------------------------------------------------------------------------- leaderboard and compare


def leaderboard_tables(board) -> list[Fitted]:
    """The leaderboard (a `vtde_bench.analysis.leaderboard.Leaderboard`) as tables, in percent: ranked, then flagged."""
    from vtde_bench.render.leaderboard import TEXT_COLUMNS, section

    styles = {"published": "dim italic", "clip_benchmark": "dim italic"}
    tables = []
    for title, rows, flagged in (("vtde-bench leaderboard (%)", board.ranked, False), ("flagged, not ranked (%)", board.flagged, True)):
        if not rows and flagged:
            continue
        titles, lines = section(board, rows, flagged=flagged)
        columns = [Col(name, right=name not in TEXT_COLUMNS, style="cyan" if name == "model" else None,
                       key=name in ("rank", "model")) for name in titles]
        tables.append(Fitted(title, columns, [[escape(v) for v in values] for values in lines],
                             ["yellow" if flagged else styles.get(row.source) for row in rows], long_names=("column", "value")))
    return tables


def print_leaderboard(board) -> None:
    for table in leaderboard_tables(board):
        out.print(table)


def render_leaderboard_text(board, *, width: int = UNLIMITED) -> str:
    """The rich leaderboard tables as plain text (for `--format table --output FILE`)."""
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    for table in leaderboard_tables(board):
        console.print(table)
    return console.export_text()


def print_plain(text: str) -> None:
    """Write text to stdout exactly as given (CSV, JSON, markdown, HTML): no markup, no wrapping."""
    out.file.write(text if text.endswith("\n") else text + "\n")
    out.file.flush()


def print_note(message: str) -> None:
    """A one-line note on stderr (something skipped, something to know), beside the output."""
    err.print(f"[yellow]•[/yellow] {escape(message)}", highlight=False, soft_wrap=True)


def print_written(path) -> None:
    out.print(f"[dim]wrote {escape(str(path))}[/dim]", highlight=False)


def comparison_table(comparison) -> Fitted:
    """A `vtde_bench.compare.Comparison` as a table: scores in percent, delta and paired interval in points."""
    from vtde_bench.render.compare import interval_text

    colours = {"regressed": "bold red", "improved": "green", "not significant": "yellow", "ok": ""}
    names = ("task", "metric", "baseline (%)", "candidate (%)", "Δ (points)", "paired 95% (points)", "verdict")
    columns = [Col(name, right=name not in ("task", "metric", "verdict"), key=name in ("task", "metric")) for name in names]
    lines = []
    for row in comparison.rows:
        style = colours.get(row.verdict, "")
        lines.append([escape(row.task), escape(short_name(row.metric)), percent(row.baseline, row.baseline_interval),
                      percent(row.candidate, row.candidate_interval), f"{row.delta:+.2f}", escape(interval_text(row.paired_interval)),
                      f"[{style}]{row.verdict}[/]" if style else row.verdict])
    title = (f"candidate {escape(str(comparison.candidate))} vs baseline {escape(str(comparison.baseline))} "
             f"(tolerance {comparison.tolerance_points:g} points)")
    return Fitted(title, columns, lines, long_names=("field", "value"))


def print_comparison(comparison) -> None:
    out.print(comparison_table(comparison))
    for note in comparison.notes:
        err.print(f"[yellow]•[/yellow] {note}", highlight=False, soft_wrap=True)
    n = len(comparison.regressions)
    if n:
        out.print(f"[bold red]{n} regression{'s' if n != 1 else ''}[/bold red]", highlight=False)
    else:
        out.print("[bold green]no regressions[/bold green]", highlight=False)
