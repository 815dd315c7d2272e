"""Files written whole or not at all: the one way results, caches and reports reach the disk."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from vtde_bench.errors import UserError


def atomic_write(path: Path, write: Callable[[Any], Any], *, where: str = "--output-dir") -> None:
    """Write a file through a temporary sibling and a rename: readers see the old file or the new, never half.

    `where` names, in the error message, the option that chooses the folder.

    Raises:
        UserError: the folder cannot be created or written (names the path).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise UserError(f"cannot write {path} ({e.strerror or e}); choose another {where}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise UserError(f"cannot write {path} ({e.strerror or e}); free space or choose another {where}") from None
        raise


def identity(path: str | Path) -> list[Any]:
    """What tells a file's content apart without reading it, as `datasets` keys its caches: [real path, size,
    mtime in ns, inode]. A file rewritten in place keeps none of them but its path."""
    stat = os.stat(path)
    return [os.path.realpath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
