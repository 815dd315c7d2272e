"""The batched embedding loop: input pipeline, cache, resume and sharding across ranks.

Work is split into chunks of consecutive rows. Each chunk is read from the
cache when it is there, else computed and written to it, so an interrupted run
resumes from its last completed chunk. Under torchrun each rank takes every
world-th chunk and the chunks are gathered on all ranks, so no row is counted
twice or dropped whatever the world size.

Images are decoded and preprocessed in DataLoader worker processes, so the
model's forward passes do not wait for decoding. A corrupt image is not raised
inside a worker (its message would be lost in a re-raise); the worker returns
the error, and the main process decides to stop or to skip it.
"""

from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import Tensor

from vtde_bench.cache import CacheEntry, Chunk
from vtde_bench.data import TaskData
from vtde_bench.dist import Shard
from vtde_bench.errors import Interrupted, UserError
from vtde_bench.encoders.base import Embedder
from vtde_bench.progress import NullProgress, Progress

_BUFFER = re.compile(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>")
MAX_WORKERS = 32  # beyond this, worker start-up and memory outweigh what more decoding processes bring


def default_workers() -> int:
    """One input worker per core (at most `MAX_WORKERS`); none on a 1-core machine (the main process then decodes).

    A GPU is fed by the workers alone: a cap of 8 left a 16-core box input-bound for ViT-B models (JPEG decoding and
    resizing run at a few hundred images a second per core, the GPU's forward passes at thousands). On the CPU the
    forward passes share the cores with the workers (`CoreShare`)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(MAX_WORKERS, cores) if cores > 1 else 0


@dataclass
class ImageEmbeddings:
    """Embeddings of the images that decoded, with the row indices they belong to."""

    embeddings: Tensor  # (n_ok, D) float32, L2-normalised
    indices: list[int]  # row index of each embedding, ascending
    bad: list[tuple[str, str]] = field(default_factory=list)  # (key, error) of each skipped image
    cached_chunks: int = 0
    chunks: int = 0


def _chunk_ranges(n: int, chunk_rows: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk_rows, n)) for start in range(0, n, chunk_rows)]


def _run_chunks(
    n: int,
    *,
    chunk_rows: int,
    cache: CacheEntry | None,
    shard: Shard,
    compute: Callable[[list[tuple[int, int]]], Iterator[Chunk]],
    check: Callable[[Chunk], None],
    progress: Progress,
    description: str,
) -> tuple[list[Chunk], int]:
    """Read or compute this rank's chunks, then gather all ranks' chunks in row order. Returns (chunks, cached)."""
    mine = _chunk_ranges(n, chunk_rows)[shard.rank :: shard.world]
    done: list[Chunk] = []
    for start, stop in mine:
        chunk = cache.read(start, stop) if cache is not None else None
        if chunk is not None:
            check(chunk)
            done.append(chunk)
    cached = len(done)
    todo = [r for r in mine if r not in {(c.start, c.stop) for c in done}]
    with progress.bar(description, total=sum(stop - start for start, stop in mine)) as bar:
        bar.skip(sum(c.stop - c.start for c in done))
        try:
            for chunk in compute(todo):
                check(chunk)
                if cache is not None:
                    cache.write(chunk)
                done.append(chunk)
                bar.advance(chunk.stop - chunk.start)
        except KeyboardInterrupt:
            what = description[0].lower() + description[1:]
            if cache is None:
                raise Interrupted(f"interrupted while {what}; nothing was kept (the cache is off)") from None
            raise Interrupted(f"interrupted while {what}; {len(done)} of {len(mine)} chunks saved, rerun to resume") from None
    chunks = shard.gather(done)
    return sorted(chunks, key=lambda c: c.start), sum(shard.gather([cached]))


# ----------------------------------------------------------------------------- images


class CoreShare:
    """Shares a CPU's cores between the input workers and the main process's forward passes.

    Both want every core, and oversubscribing them is slow: with 2 workers on 2 cores,
    a small model's image loop ran 1.4–1.8× slower with the forward passes on 2 torch
    threads than on 1. So while the loop has spent more time waiting for the workers
    than computing (input-bound: small models), the forward passes get the cores the
    workers leave (at least one); while it has computed more (large models), they get
    them all. The first forward pass gets all cores: the first wait is mostly the
    workers starting. Only on the CPU with workers; the thread count is restored on exit.
    """

    def __init__(self, device: torch.device, workers: int):
        self.active = device.type == "cpu" and workers > 0
        self.all_threads = torch.get_num_threads()
        self.few_threads = max(1, self.all_threads - workers)
        self.waited = self.computed = 0.0

    def __enter__(self) -> "CoreShare":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            torch.set_num_threads(self.all_threads)

    def threads(self) -> int:
        """The forward passes' torch threads, given the time spent so far (all of them until a forward pass is timed)."""
        return self.few_threads if 0 < self.computed < self.waited else self.all_threads

    def waiting_on(self, batches: Iterable[Any]) -> Iterator[Any]:
        iterator = iter(batches)
        while True:
            started = time.perf_counter()
            batch = next(iterator, _END)
            self.waited += time.perf_counter() - started
            if batch is _END:
                return
            yield batch

    @contextmanager
    def computing(self) -> Iterator[None]:
        if self.active and torch.get_num_threads() != self.threads():
            torch.set_num_threads(self.threads())
        started = time.perf_counter()
        yield
        self.computed += time.perf_counter() - started


_END = object()


class _ImageRows(torch.utils.data.Dataset):
    def __init__(self, data: TaskData, decode: Callable[[bytes], Any]):
        self.data = data
        self.decode = decode

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        try:
            return index, self.decode(self.data.image_bytes(index))
        except Exception as e:  # noqa: BLE001 - Pillow raises many types for bad files
            # Pillow names the image by the repr of the buffer it read ("<_io.BytesIO object at 0x7f...>"): the caller
            # names it by its key instead.
            return index, f"{type(e).__name__}: {_BUFFER.sub('the image', str(e))}"


class _Collate:
    """Runs the checkpoint's image processor on a batch, inside the worker."""

    def __init__(self, model: Embedder):
        self.model = model

    def __call__(self, rows: list[tuple[int, Any]]) -> tuple[list[int], dict[str, Any] | None, list[tuple[int, str]]]:
        good = [(i, img) for i, img in rows if not isinstance(img, str)]
        bad = [(i, img) for i, img in rows if isinstance(img, str)]
        inputs = self.model.image_inputs([img for _, img in good]) if good else None
        return [i for i, _ in good], inputs, bad


def embed_images(
    model: Embedder,
    data: TaskData,
    *,
    batch_size: int,
    workers: int | None = None,
    skip_bad_images: bool = False,
    cache: CacheEntry | None = None,
    shard: Shard | None = None,
    chunk_rows: int,
    progress: Progress | None = None,
    description: str = "Embedding images",
) -> ImageEmbeddings:
    """Embed every image of `data`, in row order.

    Raises:
        UserError: an image does not decode and `skip_bad_images` is off (names its key).
    """
    progress = progress or NullProgress()
    shard = shard or Shard.current()
    workers = default_workers() if workers is None else workers

    def check(chunk: Chunk) -> None:
        if chunk.bad and not skip_bad_images:
            index, message = chunk.bad[0]
            raise UserError(
                f"image {data.keys[index]!r} (row {index}) cannot be decoded ({message}); "
                "fix the file or rerun with --skip-bad-images"
            )

    def compute(ranges: list[tuple[int, int]]) -> Iterator[Chunk]:
        if not ranges:
            return
        batches = [list(range(s, min(s + batch_size, stop))) for start, stop in ranges for s in range(start, stop, batch_size)]
        loader = torch.utils.data.DataLoader(
            _ImageRows(data, model.decode), batch_sampler=batches, num_workers=workers, collate_fn=_Collate(model),
            pin_memory=model.device.type == "cuda",
        )
        pending = iter(ranges)
        start, stop = next(pending)
        parts: list[Tensor] = []
        indices: list[int] = []
        bad: list[tuple[int, str]] = []
        with CoreShare(model.device, workers) as share:
            for batch_indices, inputs, batch_bad in share.waiting_on(loader):
                if batch_bad and not skip_bad_images:
                    check(Chunk(start, stop, torch.zeros(0), [], batch_bad))
                bad += batch_bad
                if inputs is not None:
                    with share.computing():
                        parts.append(model.embed_image_inputs(inputs))
                    indices += batch_indices
                if max(batch_indices + [i for i, _ in batch_bad]) == stop - 1:
                    yield Chunk(start, stop, _cat(parts), indices, bad)
                    parts, indices, bad = [], [], []
                    start, stop = next(pending, (None, None))

    chunks, cached = _run_chunks(
        len(data), chunk_rows=chunk_rows, cache=cache, shard=shard, compute=compute, check=check,
        progress=progress, description=description,
    )
    if cached:
        progress.note(f"{cached} of {len(chunks)} chunks of image embeddings read from the cache")
    indices = [i for c in chunks for i in c.indices]
    if not indices:
        raise UserError(f"none of the {len(data)} images could be decoded; check the dataset")
    return ImageEmbeddings(
        embeddings=_cat([c.embeddings for c in chunks if c.indices]),
        indices=indices,
        bad=[(data.keys[i], m) for c in chunks for i, m in c.bad],
        cached_chunks=cached,
        chunks=len(chunks),
    )


def _cat(parts: list[Tensor]) -> Tensor:
    return torch.cat(parts) if parts else torch.zeros(0, 0)


# ----------------------------------------------------------------------------- texts


def embed_texts(
    model: Embedder,
    texts: list[str],
    *,
    batch_size: int,
    cache: CacheEntry | None = None,
    shard: Shard | None = None,
    chunk_rows: int,
    progress: Progress | None = None,
    description: str = "Embedding texts",
) -> Tensor:
    """(len(texts), D) L2-normalised embeddings, in order. Tokenised in the main process: it is cheap.

    Within each chunk texts are embedded shortest first, so a batch pads to a similar length.
    """
    progress = progress or NullProgress()
    shard = shard or Shard.current()

    def compute(ranges: list[tuple[int, int]]) -> Iterator[Chunk]:
        for start, stop in ranges:
            # Texts of similar length share a batch, so little of it is padding; rows go back in order after.
            order = sorted(range(start, stop), key=lambda i: len(texts[i]))
            parts = [model.embed_text_inputs(model.text_inputs([texts[i] for i in order[s : s + batch_size]]))
                     for s in range(0, len(order), batch_size)]
            yield Chunk(start, stop, torch.cat(parts)[torch.tensor(order).argsort()], list(range(start, stop)), [])

    chunks, cached = _run_chunks(
        len(texts), chunk_rows=chunk_rows, cache=cache, shard=shard, compute=compute, check=lambda c: None,
        progress=progress, description=description,
    )
    if cached:
        progress.note(f"{cached} of {len(chunks)} chunks of text embeddings read from the cache")
    return torch.cat([c.embeddings for c in chunks])
