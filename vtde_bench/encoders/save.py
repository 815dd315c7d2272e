"""Saving a model and its processor whole or not at all (the demo's checkpoints, `vtde-bench convert`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_pretrained_atomically(model: Any, processor: Any, out_dir: str | Path) -> Path:
    """Save a model and its processor into a sibling temp folder, then swap it in: `out_dir` is never half written.

    An existing `out_dir` is replaced (moved aside first, then removed).
    """
    import os
    import shutil
    import tempfile

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.new-", dir=out_dir.parent))
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old / "model")
            os.replace(staging, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir
