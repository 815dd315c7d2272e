"""The leaderboard as one self-contained HTML file: inline CSS, the table, and an inline SVG bar chart per task.

Nothing is loaded from anywhere (no scripts, fonts or stylesheets), so the file reads offline and
can be attached to a CI run or mailed. Scores are shown in percent; bars carry the 95% interval
as whiskers where the result has one.
"""

from __future__ import annotations

import datetime as _dt
from html import escape

from vtde_bench.analysis.leaderboard import Column, Leaderboard, Row
from vtde_bench.render.leaderboard import TEXT_COLUMNS, section

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #1f2328; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { padding: 0.3rem 0.6rem; border-bottom: 1px solid #d0d7de; text-align: right; }
th { background: #f6f8fa; } td.text, th.text { text-align: left; }
tr.published td, tr.clip_benchmark td { color: #57606a; font-style: italic; }
tr.flagged td { background: #fff8c5; }
.note { color: #57606a; font-size: 0.85rem; max-width: 60rem; }
.chart { margin: 0.5rem 0 1.5rem 0; } .legend span { margin-right: 1rem; font-size: 0.85rem; }
"""

COLOURS = {"vtde-bench": "#0969da", "published": "#8c959f", "clip_benchmark": "#bf8700", "flagged": "#d1242f"}
_LABEL_W, _BAR_W, _VALUE_W, _ROW_H = 300, 340, 70, 22


def _table(board: Leaderboard, rows: list[Row], *, reasons: bool) -> str:
    titles, lines = section(board, rows, flagged=reasons)
    head = "".join(f'<th class="{"text" if t in TEXT_COLUMNS else "num"}">{escape(t)}</th>' for t in titles)
    body = []
    for row, values in zip(rows, lines):
        tds = "".join(f'<td class="{"text" if t in TEXT_COLUMNS else "num"}">{escape(v)}</td>' for t, v in zip(titles, values))
        body.append(f'<tr class="{"flagged" if row.flagged else escape(row.source)}">{tds}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _chart(column: Column, rows: list[Row]) -> str:
    """A horizontal bar per row that has this task, 0–100%, with interval whiskers."""
    rows = [r for r in rows if column.task in r.scores]
    height = _ROW_H * len(rows) + 30
    width = _LABEL_W + _BAR_W + _VALUE_W
    parts = [f'<svg width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(column.task)} {escape(column.main_metric)} by model">']
    for tick in (0, 25, 50, 75, 100):
        x = _LABEL_W + _BAR_W * tick / 100
        parts.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height - 18}" stroke="#d0d7de"/>'
                     f'<text x="{x:.1f}" y="{height - 4}" font-size="11" text-anchor="middle" fill="#57606a">{tick}%</text>')
    for i, row in enumerate(rows):
        y = i * _ROW_H + 4
        score = row.scores[column.task]
        colour = COLOURS["flagged"] if row.flagged else COLOURS.get(row.source, "#0969da")
        label = row.model if len(row.model) <= 44 else row.model[:43] + "…"
        parts.append(f'<text x="{_LABEL_W - 6}" y="{y + 13}" font-size="12" text-anchor="end">{escape(label)}</text>')
        parts.append(f'<rect x="{_LABEL_W}" y="{y}" width="{_BAR_W * max(0.0, min(1.0, score)):.1f}" height="{_ROW_H - 8}" '
                     f'fill="{colour}"><title>{escape(row.model)}: {100 * score:.2f}%</title></rect>')
        interval = row.intervals.get(column.task)
        if interval:
            lo, hi = (_LABEL_W + _BAR_W * max(0.0, min(1.0, v)) for v in interval)
            mid = y + (_ROW_H - 8) / 2
            parts.append(f'<path d="M{lo:.1f},{mid:.1f}H{hi:.1f}M{lo:.1f},{mid - 4:.1f}V{mid + 4:.1f}M{hi:.1f},{mid - 4:.1f}V{mid + 4:.1f}" '
                         f'stroke="#1f2328" stroke-width="1.2" fill="none"><title>95% interval {100 * interval[0]:.2f}–{100 * interval[1]:.2f}%</title></path>')
        parts.append(f'<text x="{_LABEL_W + _BAR_W + 6}" y="{y + 13}" font-size="12">{100 * score:.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def to_html(board: Leaderboard, *, title: str = "vtde-bench leaderboard") -> str:
    """One HTML document: the ranked table, the flagged table, and a chart per task (percent)."""
    legend = "".join(f'<span style="color:{c}">■ {escape(name)}</span>' for name, c in COLOURS.items())
    mains = ", ".join(f"{c.task}: {c.main_metric}" for c in board.columns)
    html = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>", f"<h1>{escape(title)}</h1>",
        f'<p class="note">Main scores in percent ({escape(mains)}), ± half the 95% bootstrap interval. Averages are over the '
        "tasks each row has. Published and imported rows are labelled by source and sorted by score but not ranked. "
        f"Generated {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}.</p>",
        _table(board, board.ranked, reasons=False),
    ]
    if board.flagged:
        html += ["<h2>Flagged, not ranked</h2>",
                 '<p class="note">Run with <code>--limit</code>, or on a task version or dataset other than the rest: '
                 "not comparable with the table above.</p>", _table(board, board.flagged, reasons=True)]
    html.append(f'<h2>Scores by task</h2><p class="legend">{legend}</p>')
    for column in board.columns:
        html.append(f"<h3>{escape(column.task)} <small>({escape(column.main_metric)}, %)</small></h3>")
        html.append(f'<div class="chart">{_chart(column, board.rows)}</div>')
    html.append("</body></html>")
    return "\n".join(html) + "\n"
