"""The leaderboard in every format but the console's and HTML: a DataFrame, CSV, JSON and markdown.

JSON, CSV and the DataFrame hold fractions; markdown (and the console table and HTML) show percent.
"""

from __future__ import annotations

import io
import json
from typing import Any

from vtde_bench.analysis.leaderboard import Leaderboard, Row
from vtde_bench.kinds import find_kind


def type_label(kind: str) -> str:
    definition = find_kind(kind)
    return f"{definition.short if definition is not None else kind} avg"


def to_frame(board: Leaderboard):
    """A DataFrame, one row per leaderboard row; fractions. `section` is "main" (ranked runs and labelled
    published/imported rows, which have no rank) or "flagged" (never ranked; `flags` says why)."""
    import pandas as pd

    records = []
    for row in board.rows:
        item: dict[str, Any] = {"section": "flagged" if row.flagged else "main", "rank": row.rank, "model": row.model,
                                "source": row.source, "model_path": row.model_path}
        item.update({c.task: row.scores.get(c.task) for c in board.columns})
        item.update({type_label(k): row.averages.get(k) for k in board.task_types})
        item.update({name: row.categories.get(name) for name in board.categories})
        item["average"] = row.average
        item["flags"] = "; ".join(row.flags)
        records.append(item)
    frame = pd.DataFrame(records, columns=["section", "rank", "model", "source", "model_path", *[c.task for c in board.columns],
                                           *[type_label(k) for k in board.task_types], *board.categories, "average", "flags"])
    frame["rank"] = frame["rank"].astype("Int64")
    return frame


def to_csv(board: Leaderboard) -> str:
    """CSV of `to_frame` (fractions; empty cells for missing values)."""
    buffer = io.StringIO()
    to_frame(board).to_csv(buffer, index=False)
    return buffer.getvalue()


def to_json(board: Leaderboard) -> str:
    """JSON with `units: "fractions"`, the task columns and every row with its scores, intervals, averages and flags."""
    data = {
        "units": "fractions",
        "tasks": [{"name": c.task, "type": c.task_type, "main_metric": c.main_metric} for c in board.columns],
        "rows": [
            {"section": "flagged" if r.flagged else "main", "rank": r.rank, "model": r.model, "source": r.source,
             "model_path": r.model_path, "scores": r.scores, "intervals": {t: list(v) for t, v in r.intervals.items()},
             "averages": r.averages, "categories": r.categories, "average": r.average, "flags": r.flags, "missing": r.missing}
            for r in board.rows
        ],
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def percent_cell(value: float | None, interval: tuple[float, float] | None = None) -> str:
    """A score in percent with two decimals, and ± half the 95% interval's width in points when known."""
    if value is None:
        return ""
    text = f"{100 * value:.2f}"
    return text + (f" ±{50 * (interval[1] - interval[0]):.1f}" if interval else "")


def header(board: Leaderboard) -> list[str]:
    """Column titles shared by the markdown, rich and HTML tables."""
    return ["rank", "model", "source", *[c.task for c in board.columns], *[type_label(k) for k in board.task_types],
            *board.categories, "average"]


def cells(board: Leaderboard, row: Row) -> list[str]:
    """One row's cells under `header`, in percent."""
    return [
        "" if row.rank is None else str(row.rank), row.model, row.source,
        *[percent_cell(row.scores.get(c.task), row.intervals.get(c.task)) for c in board.columns],
        *[percent_cell(row.averages.get(k)) for k in board.task_types],
        *[percent_cell(row.categories.get(name)) for name in board.categories], percent_cell(row.average),
    ]


TEXT_COLUMNS = frozenset({"model", "source", "why not ranked"})  # left-aligned; every other column is a number


def section(board: Leaderboard, rows: list[Row], *, flagged: bool) -> tuple[list[str], list[list[str]]]:
    """Titles and cells of the ranked table, or of the flagged one (no rank; a "why not ranked" column)."""
    if not flagged:
        return header(board), [cells(board, r) for r in rows]
    return [*header(board)[1:], "why not ranked"], [[*cells(board, r)[1:], "; ".join(r.flags)] for r in rows]


def _markdown_table(titles: list[str], lines: list[list[str]]) -> str:
    def escape(text: str) -> str:
        return text.replace("|", "\\|")

    align = ["---" if t in TEXT_COLUMNS else "---:" for t in titles]
    out = ["| " + " | ".join(titles) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(escape(c) for c in line) + " |" for line in lines]
    return "\n".join(out)


def to_markdown(board: Leaderboard) -> str:
    """Markdown: the ranked table, then the flagged rows with their reasons; scores in percent."""
    main = ", ".join(f"{c.task}: {c.main_metric}" for c in board.columns)
    parts = ["## vtde-bench leaderboard", "",
             f"Main scores in percent (± half the 95% bootstrap interval); {main}. "
             "Published and imported rows are labelled by source and not ranked.", "",
             _markdown_table(*section(board, board.ranked, flagged=False))]
    if board.flagged:
        parts += ["", "### Flagged, not ranked", "",
                  "Run with `--limit`, on a task version or dataset other than the rest, or missing tasks of the ranked set: "
                  "not comparable with the table above.", "",
                  _markdown_table(*section(board, board.flagged, flagged=True))]
    return "\n".join(parts) + "\n"
