"""The on-disk embedding cache: re-runs cost almost nothing, and interrupted runs resume.

It also keeps the image hashes behind each dataset's fingerprint (`TaskData.image_hashes`).

An entry is a folder named by the sha256 of its key (weights fingerprint,
preprocessing fingerprint, precision, the rows' ordered image hashes, ...).
Embeddings are stored in chunks of consecutive rows; each chunk file is
written atomically and followed by a checksum file, so a chunk counts only
when both exist and agree. A damaged chunk is deleted and recomputed, never
trusted. Nothing here knows about models or tasks.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtde_bench.files import atomic_write

if TYPE_CHECKING:
    import torch

ENV = "VTDE_BENCH_CACHE"
# Written in the root by the first entry: `cache clear` removes only what a folder with it (or with the layout
# of a cache written before the marker existed) holds of the cache's own entries.
MARKER = "VTDE_BENCH_CACHE.txt"
MARKER_TEXT = b"This folder is a vtde-bench embedding cache: `vtde-bench cache clear` empties it of its entries.\n"
_ENTRY = re.compile(r"[0-9a-f]{64}")


def default_root() -> Path:
    """`$VTDE_BENCH_CACHE`, else `$XDG_CACHE_HOME/vtde-bench/embeddings`, else `~/.cache/vtde-bench/embeddings`."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vtde-bench" / "embeddings"


@dataclass
class Chunk:
    """Embeddings of rows [start, stop): those that decoded, and the (row, message) of those that did not."""

    start: int
    stop: int
    embeddings: torch.Tensor  # (n_ok, D) float32
    indices: list[int]  # row index of each embedding
    bad: list[tuple[int, str]]


class CacheEntry:
    """One set of embeddings (the images of a task, or a list of texts) under one key."""

    def __init__(self, folder: Path, key: dict[str, Any]):
        self.folder = folder
        self.key = key

    def _name(self, start: int, stop: int) -> str:
        return f"chunk-{start:010d}-{stop:010d}"

    def write(self, chunk: Chunk) -> None:
        import torch  # here, so that `vtde-bench cache info|clear` need not load it

        buffer = io.BytesIO()
        torch.save({"embeddings": chunk.embeddings.contiguous(), "indices": torch.tensor(chunk.indices, dtype=torch.long),
                    "bad": [list(b) for b in chunk.bad]}, buffer)
        self._write_checked(f"{self._name(chunk.start, chunk.stop)}.pt", buffer.getvalue())

    def read(self, start: int, stop: int) -> Chunk | None:
        """The chunk for rows [start, stop) if it is complete and intact; a damaged one is removed."""

        def parse(data: bytes) -> Chunk:
            import torch

            payload = torch.load(io.BytesIO(data), weights_only=True)
            chunk = Chunk(start, stop, payload["embeddings"].float(), payload["indices"].tolist(),
                          [(int(i), str(m)) for i, m in payload["bad"]])
            if chunk.embeddings.shape[0] != len(chunk.indices) or not all(start <= i < stop for i in chunk.indices):
                raise ValueError("inconsistent chunk")
            return chunk

        return self._read_checked(f"{self._name(start, stop)}.pt", parse)

    def write_json(self, name: str, value: Any) -> None:
        self._write_checked(f"{name}.json", json.dumps(value).encode())

    def read_json(self, name: str) -> Any | None:
        """The value stored under `name`, or None when it is missing or damaged (then it is removed)."""
        return self._read_checked(f"{name}.json", json.loads)

    def _write_checked(self, filename: str, data: bytes) -> None:
        """The file, then its sha256 (`name.sha256`) beside it: the pair counts only when both exist and agree."""
        where = "--cache-dir (or use --no-cache)"  # named in the message when the cache folder cannot be written
        marker = self.folder.parent.parent / MARKER
        if not marker.exists():
            atomic_write(marker, lambda f: f.write(MARKER_TEXT), where=where)
        if not (self.folder / "key.json").exists():
            text = json.dumps(self.key, indent=1, sort_keys=True).encode()
            atomic_write(self.folder / "key.json", lambda f: f.write(text), where=where)
        atomic_write(self.folder / filename, lambda f: f.write(data), where=where)
        digest = hashlib.sha256(data).hexdigest().encode()
        atomic_write((self.folder / filename).with_suffix(".sha256"), lambda f: f.write(digest), where=where)

    def _read_checked(self, filename: str, parse: Any) -> Any | None:
        data_path = self.folder / filename
        sum_path = data_path.with_suffix(".sha256")
        if not data_path.is_file() or not sum_path.is_file():
            return None
        data = data_path.read_bytes()
        try:
            if hashlib.sha256(data).hexdigest() != sum_path.read_text().strip():
                raise ValueError("checksum mismatch")
            return parse(data)
        except Exception:  # noqa: BLE001 - any damage means: recompute
            data_path.unlink(missing_ok=True)
            sum_path.unlink(missing_ok=True)
            return None


class EmbeddingCache:
    """Entries under a root folder; `None` root disables caching (`--no-cache`)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root()

    def entry(self, key: dict[str, Any]) -> CacheEntry:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        return CacheEntry(self.root / digest[:2] / digest, key)

    def _entries(self) -> tuple[list[Path], list[Path]]:
        """(the cache's entry folders, every other thing) under the root: an entry is `<root>/ab/ab<62 hex>/`."""
        entries, foreign = [], []
        if not self.root.is_dir():
            return entries, foreign
        for child in sorted(self.root.iterdir()):
            if child.name == MARKER:
                continue
            if not (child.is_dir() and not child.is_symlink() and re.fullmatch(r"[0-9a-f]{2}", child.name)):
                foreign.append(child)
                continue
            for entry in sorted(child.iterdir()):
                own = entry.is_dir() and not entry.is_symlink() and _ENTRY.fullmatch(entry.name) and entry.name[:2] == child.name
                (entries if own else foreign).append(entry)
        return entries, foreign

    def info(self) -> dict[str, Any]:
        """Number of entries of embeddings and their chunks, of stored image hashes, and bytes on disk (of entries)."""
        entries = chunks = hash_sets = size = 0
        for folder in self._entries()[0]:
            found = len(list(folder.glob("chunk-*.pt")))
            entries += found > 0
            chunks += found
            hash_sets += (folder / "image-hashes.json").is_file()
            size += sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        return {"root": str(self.root), "entries": entries, "chunks": chunks, "image_hash_sets": hash_sets, "bytes": size}

    def clear(self) -> int:
        """Remove the cache's own entries; returns the bytes freed.

        A folder with the cache's marker loses only its entries (anything else in it stays). A folder
        without the marker is cleared only when it holds nothing but entries (a cache written before the
        marker existed); any other folder is refused, and nothing is deleted.

        Raises:
            UserError: the folder is not a vtde-bench cache.
        """
        from vtde_bench.errors import UserError

        entries, foreign = self._entries()
        if foreign and not (self.root / MARKER).is_file():
            raise UserError(
                f"{self.root} is not a vtde-bench embedding cache (it holds {foreign[0].name!r}, which the cache did not "
                "write); nothing was deleted: point --cache-dir at the cache folder"
            )
        size = self.info()["bytes"]
        for folder in entries:
            shutil.rmtree(folder)
        for parent in {folder.parent for folder in entries}:
            if not any(parent.iterdir()):
                parent.rmdir()
        return size
