"""Which commit of a hub source a copy holds: a pinned card's revision, or, for an unpinned card (a branch),
the commit the hub resolved it to, recorded by `download` in the copy (`RECORD`) and by runs in the result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vtde_bench.errors import UserError

RECORD = ".vtde-source.json"  # written by `download` into the copy: the repo, the card's revision, the commit


def resolve_commit(task: Any) -> str:
    """The commit the task's hub source reads now: its revision when pinned, else the one its branch names.

    Raises:
        UserError: the hub cannot say (no network, no such repo or branch).
    """
    src = task.source
    if src.pinned:
        return src.revision
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return HfApi().dataset_info(src.hub, revision=src.revision).sha
    except (HfHubHTTPError, OSError) as e:
        raise UserError(f"task {task.name}: cannot resolve {src.hub}@{src.revision} to a commit ({str(e).splitlines()[0]}); "
                        "check the network, or download the task and pass --data-dir") from None


def record(task: Any, commit: str | None, via: str) -> dict[str, Any]:
    return {"hub": task.source.hub, "revision": task.source.revision, "resolved_commit": commit, "via": via}


def write_record(folder: Path, task: Any, commit: str | None, via: str) -> None:
    (folder / RECORD).write_text(json.dumps(record(task, commit, via), indent=2) + "\n", encoding="utf-8")


def recorded_commit(folder: Path, task: Any) -> str | None:
    """The commit a downloaded copy of the task's source holds, from its record; None when it has none (a copy
    made otherwise) or the record is of another repo."""
    try:
        data = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("hub") != task.source.hub:
        return None
    commit = data.get("resolved_commit")
    return commit if isinstance(commit, str) else None
