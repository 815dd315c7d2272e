"""Published reference numbers, shipped as package data (`published.json`), each row naming its source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vtde_bench.errors import UserError

PUBLISHED = Path(__file__).resolve().parent / "published.json"


def published_rows() -> list[dict[str, Any]]:
    """Rows of {model, label, metrics: {task: {metric: fraction}}}; see the file's `source`."""
    return json.loads(PUBLISHED.read_text(encoding="utf-8"))["rows"]


def published_source() -> str:
    return json.loads(PUBLISHED.read_text(encoding="utf-8"))["source"]


def published_for(model: str) -> dict[str, dict[str, float]]:
    """The published metrics of one model id, by task.

    Raises:
        UserError: no published row for that model.
    """
    for row in published_rows():
        if row["model"] == model:
            return row["metrics"]
    known = ", ".join(r["model"] for r in published_rows())
    raise UserError(f"no published numbers for {model}; known: {known}")
