"""A task's rows in canonical form, whatever their layout: `TaskData`, its image bytes and their hashes, and
the content fingerprint that does not depend on the layout."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from vtde_bench.errors import UserError
from vtde_bench.progress import NullProgress, Progress

if TYPE_CHECKING:
    from vtde_bench.cache import EmbeddingCache


@dataclass
class TaskData:
    """A task's rows in canonical form; images stay on disk until asked for.

    `labels` is set for classification and `captions` for retrieval. A row's image is in the
    first of `image_columns` that holds one (webdataset shards may mix image types).
    """

    dataset: Any  # a datasets.Dataset whose image columns are not decoded
    image_columns: tuple[str, ...]
    keys: list[str]
    layout: str
    location: str
    labels: list[int] | None = None
    captions: list[list[str]] | None = None
    instances: list[Any] | None = None  # kinds that need instances: `data.instances.Instance`s over these rows
    metadata: dict[str, list[int]] | None = None  # per field of the card's `source.metadata_fields`: each row's value
    crops: list[tuple[float, float, float, float]] | None = None  # each row's box (x, y, w, h): its image is that crop
    groups: list[str] | None = None  # each row's group name (the card's `source.group_column`)
    items: list[tuple[str, tuple[int, ...]]] | None = None  # paired items: each one's key and its rows, in column order
    blank_captions: int = 0  # captions that are empty or only whitespace (kept, as CLIP_benchmark keeps them)
    fingerprint: str = ""  # content only: the same rows in any order or layout give the same value
    image_sha256: list[str] | None = None  # each row's image bytes' sha256, in row order
    order_fingerprint: str = ""
    resolved_commit: str | None = None  # the hub commit the rows are of, where known (`data.provenance`)

    def __len__(self) -> int:
        return len(self.keys)

    def image_bytes(self, index: int) -> bytes:
        """The bytes of the row's image: the stored ones, or (a row with a crop box) the crop's, cut here, once."""
        row = self.dataset[index]
        data = _as_bytes(_first([row[c] for c in self.image_columns]), self.keys[index], self.image_columns)
        if self.crops is not None:
            from vtde_bench.imaging import crop_box

            return crop_box(data, self.crops[index])
        return data

    def _iter_image_values(self, batch_size: int = 256):
        """Each row's image value in row order, read in batches (much faster than row by row)."""
        columns = self.dataset.select_columns(list(self.image_columns))
        for batch in columns.iter(batch_size=batch_size):
            yield from map(lambda *values: _first(values), *(batch[c] for c in self.image_columns))

    def image_hashes(
        self, cache: "EmbeddingCache | None" = None, progress: Progress | None = None, description: str = "Fingerprinting images"
    ) -> list[str]:
        """sha256 of every image's bytes, in row order; a row with a crop box gets the hash of its image's bytes and
        the box (the same image cropped two ways is two images, to the fingerprint and to the embedding cache).

        With a cache, the hashes are kept under a key made of the identity (path,
        size, mtime, inode) of the arrow files the rows live in, as `datasets`
        itself does for local data files: a warm re-run then reads no image bytes
        at all, which on ImageNet-sized sets is most of its time. Images stored as
        paths (an imagefolder) live outside those files and are never cached.
        """
        hashes = self._stored_hashes(cache, progress or NullProgress(), description)
        if self.crops is None:
            return hashes
        return [hashlib.sha256(f"{h} crop {json.dumps(list(box))}".encode()).hexdigest() for h, box in zip(hashes, self.crops)]

    def _stored_hashes(self, cache: "EmbeddingCache | None", progress: Progress, description: str) -> list[str]:
        entry = cache.entry(key) if cache is not None and (key := self._hashes_key()) is not None else None
        cached = entry.read_json("image-hashes") if entry is not None else None
        if isinstance(cached, list) and len(cached) == len(self):
            return cached
        hashes, from_paths = [], False
        with progress.bar(description, total=len(self)) as bar:
            for value, key in zip(self._iter_image_values(), self.keys):
                hashes.append(hashlib.sha256(_as_bytes(value, key, self.image_columns)).hexdigest())
                from_paths = from_paths or (isinstance(value, dict) and value.get("bytes") is None)
                bar.advance()
        if entry is not None and not from_paths:
            entry.write_json("image-hashes", hashes)
        return hashes

    def _hashes_key(self) -> dict[str, Any] | None:
        files = [f["filename"] for f in getattr(self.dataset, "cache_files", None) or []]
        if not files:
            return None
        from vtde_bench.files import identity

        columns = self.image_columns[0] if len(self.image_columns) == 1 else list(self.image_columns)
        return {"kind": "image-hashes", "files": [identity(name) for name in files], "rows": len(self), "column": columns}


def _first(values: Sequence[Any]) -> Any:
    return next((v for v in values if v is not None), None)


def _as_bytes(value: Any, key: str, columns: Sequence[str]) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dict):
        if value.get("bytes") is not None:  # b"" is a zero-byte image: a bad image (skippable), not a missing one
            return value["bytes"]
        if value.get("path"):
            if "://" in value["path"]:  # an archive member or a remote file, as `datasets` names them
                import fsspec

                with fsspec.open(value["path"], "rb") as f:
                    return f.read()
            return Path(value["path"]).read_bytes()
    where = f"column '{columns[0]}'" if len(columns) == 1 else f"any of the columns {', '.join(columns)}"
    raise UserError(f"image {key!r} holds no image bytes or path in {where}; check the image column (or the shard's files)")


def content_fingerprint(image_hashes: Sequence[str], targets: Sequence[Any]) -> str:
    """sha256 over the rows sorted by (image sha256, label or captions).

    Row keys are left out on purpose: each layout names rows its own way (tar
    keys, file names, row numbers), and the same data in two layouts must get
    the same fingerprint. Sorting makes it independent of row order, as every
    metric is.
    """
    rows = sorted(f"{h}\t{json.dumps(t, ensure_ascii=False)}" for h, t in zip(image_hashes, targets))
    digest = hashlib.sha256()
    for row in rows:
        digest.update(row.encode("utf-8") + b"\n")
    return digest.hexdigest()
