"""The batched embedding loop and its input pipeline.

Images are decoded and preprocessed in DataLoader worker processes, so the
model's forward passes do not wait for JPEG decoding. A corrupt image is not
raised inside a worker (where the message would be lost in a re-raise); the
worker returns its key and error, and the main process decides to stop or to
skip it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from vtde_bench.data import TaskData, decode_image
from vtde_bench.errors import UserError
from vtde_bench.models import Embedder
from vtde_bench.progress import NullProgress, Progress


def default_workers() -> int:
    """One worker per core, leaving one for the main process; none on a 1-core machine."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cores - 1))


@dataclass
class ImageEmbeddings:
    """Embeddings of the images that decoded, with the row indices they belong to."""

    embeddings: Tensor  # (n_ok, D) float32, L2-normalised
    indices: list[int]  # row index of each embedding
    bad: list[tuple[str, str]] = field(default_factory=list)  # (key, error) of each skipped image


class _ImageRows(torch.utils.data.Dataset):
    def __init__(self, data: TaskData):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        key = self.data.keys[index]
        try:
            return index, decode_image(self.data.image_bytes(index))
        except Exception as e:  # Pillow raises many types for bad files
            return index, f"{key}: {type(e).__name__}: {e}"


class _Collate:
    """Runs the checkpoint's image processor on a batch, inside the worker."""

    def __init__(self, model: Embedder):
        self.model = model

    def __call__(self, rows: list[tuple[int, Any]]) -> tuple[list[int], dict[str, Tensor] | None, list[tuple[int, str]]]:
        good = [(i, img) for i, img in rows if not isinstance(img, str)]
        bad = [(i, img) for i, img in rows if isinstance(img, str)]
        inputs = self.model.image_inputs([img for _, img in good]) if good else None
        return [i for i, _ in good], inputs, bad


def embed_images(
    model: Embedder,
    data: TaskData,
    *,
    batch_size: int = 64,
    workers: int | None = None,
    skip_bad_images: bool = False,
    progress: Progress | None = None,
    description: str = "Embedding images",
) -> ImageEmbeddings:
    """Embed every image of `data`, in row order.

    Raises:
        UserError: an image does not decode and `skip_bad_images` is off (names its key).
    """
    progress = progress or NullProgress()
    workers = default_workers() if workers is None else workers
    loader = torch.utils.data.DataLoader(
        _ImageRows(data),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_Collate(model),
        pin_memory=model.device.type == "cuda",
        persistent_workers=False,
    )
    chunks: list[Tensor] = []
    indices: list[int] = []
    bad: list[tuple[str, str]] = []
    with progress.bar(description, total=len(data)) as bar:
        for batch_indices, inputs, batch_bad in loader:
            for index, message in batch_bad:
                if not skip_bad_images:
                    raise UserError(
                        f"image {data.keys[index]!r} (row {index}) cannot be decoded ({message.split(': ', 1)[1]}); "
                        "fix the file or rerun with --skip-bad-images"
                    )
                bad.append((data.keys[index], message))
            if inputs is not None:
                chunks.append(model.embed_image_inputs(inputs))
                indices.extend(batch_indices)
            bar.advance(len(batch_indices) + len(batch_bad))
    if not chunks:
        raise UserError(f"none of the {len(data)} images could be decoded; check the dataset")
    return ImageEmbeddings(torch.cat(chunks), indices, bad)


def embed_texts(
    model: Embedder,
    texts: list[str],
    *,
    batch_size: int = 256,
    progress: Progress | None = None,
    description: str = "Embedding texts",
) -> Tensor:
    """(len(texts), D) L2-normalised embeddings, in order. Tokenised in the main process: it is cheap."""
    progress = progress or NullProgress()
    chunks = []
    with progress.bar(description, total=len(texts)) as bar:
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            chunks.append(model.embed_text_inputs(model.text_inputs(batch)))
            bar.advance(len(batch))
    return torch.cat(chunks)
