"""The evaluation step every kind shares: embed a task's images, hand them to its kind to score.

Also what kinds use to score: text embedding with each distinct text embedded once, the columns
that tie a per-sample row to its image, and the `Scores` a kind returns.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from vtde_bench.cache import CacheEntry, EmbeddingCache
from vtde_bench.data import TaskData
from vtde_bench.embedding import ImageEmbeddings, embed_images, embed_texts
from vtde_bench.encoders.base import Embedder
from vtde_bench.options import RunOptions
from vtde_bench.progress import NullProgress, Progress
from vtde_bench.spec import TaskSpec


@dataclass
class Outcome:
    """What a task's evaluation measured; the engine adds provenance and makes a `TaskResult`."""

    metrics: dict[str, float]
    samples: pd.DataFrame
    num_images: int
    num_texts: int
    bad_images: list[tuple[str, str]]
    timings: dict[str, float]
    per_class_recall: dict[str, float | None] | None = None
    per_group: dict[str, dict[str, dict[str, Any]]] | None = None
    details: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass
class Scores:
    """What a kind's `score` computes from the image embeddings."""

    metrics: dict[str, float]
    samples: pd.DataFrame
    num_texts: int
    timings: dict[str, float]  # embed_texts_s, metrics_s
    per_class_recall: dict[str, float | None] | None = None
    # Group metrics' groups: {metric: {"field=value": {"value": hit rate, "images": n}}}
    per_group: dict[str, dict[str, dict[str, Any]]] | None = None
    details: dict[str, Any] | None = None  # what a kind chose or measured besides its metrics (a probe's λ)
    warnings: list[str] = field(default_factory=list)  # numbers that are right but may not mean what they seem
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # (hits, queries) behind each count metric


@dataclass(frozen=True)
class Context:
    """What a task's evaluation runs with: the run's options, and what is made of them once per run."""

    options: RunOptions
    cache: EmbeddingCache | None  # None: compute everything, write nothing
    progress: Progress = field(default_factory=NullProgress)


def _image_cache(model: Embedder, data: TaskData, cache: EmbeddingCache | None) -> CacheEntry | None:
    key = model.cache_key("images") if cache is not None else None  # a key serialises the processor: skip it when off
    if key is None:
        return None
    return cache.entry({"kind": "images", **key, "rows": data.order_fingerprint})


def _text_cache(model: Embedder, texts: list[str], cache: EmbeddingCache | None) -> CacheEntry | None:
    key = model.cache_key("texts") if cache is not None else None  # a key serialises the whole tokenizer
    if key is None:
        return None
    digest = hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode()).hexdigest()
    return cache.entry({"kind": "texts", **key, "texts": digest})


def task_images(model: Embedder, data: TaskData, context: Context) -> ImageEmbeddings:
    """The image embeddings of a task's rows, through the run's cache, resume and sharding (kinds that embed
    another split, as a probe's train split, call it too)."""
    options = context.options
    return embed_images(
        model, data, batch_size=options.batch_size, workers=options.workers, skip_bad_images=options.skip_bad_images,
        cache=_image_cache(model, data, context.cache), chunk_rows=options.chunk_rows, progress=context.progress,
    )


def embed_distinct_texts(model: Embedder, texts: list[str], context: Context, description: str) -> torch.Tensor:
    """(len(texts), D) embeddings. Each distinct text is embedded once, so equal texts get equal embeddings
    whatever batch or chunk they would have fallen in (COCO's repeated captions, ImageNet's repeated names)."""
    position: dict[str, int] = {}
    where = [position.setdefault(text, len(position)) for text in texts]
    unique = list(position)
    options = context.options
    emb = embed_texts(model, unique, batch_size=options.text_batch_size, cache=_text_cache(model, unique, context.cache),
                      chunk_rows=options.text_chunk_rows, progress=context.progress, description=description)
    return emb[torch.tensor(where, dtype=torch.long)] if len(unique) < len(texts) else emb


def sample_identity(data: TaskData, rows: list[int]) -> dict[str, list]:
    """Per-sample columns that say which image a query belongs to: its row (unique, unlike keys, which two
    shards may share) and its image's sha256 (the same in every layout: what bootstrap and pairing order by)."""
    columns: dict[str, list] = {"row": rows}
    if data.image_sha256 is not None:
        columns["image_sha256"] = [data.image_sha256[i] for i in rows]
    return columns


def evaluate_task(task: TaskSpec, model: Embedder, data: TaskData, context: Context) -> Outcome:
    """Embed the task's images, then score them its kind's way."""
    started = time.perf_counter()
    images = task_images(task.kind.image_embedder(task, model), data, context)
    embed_images_s = time.perf_counter() - started
    scores = task.kind.score(task, model, data, images, context)
    return Outcome(
        metrics=scores.metrics,
        samples=scores.samples,
        num_images=len(images.indices),
        num_texts=scores.num_texts,
        bad_images=images.bad,
        timings={"embed_images_s": embed_images_s, **scores.timings},
        per_class_recall=scores.per_class_recall,
        per_group=scores.per_group,
        details=scores.details,
        extra={"image_chunks": images.chunks, "image_chunks_from_cache": images.cached_chunks},
        warnings=scores.warnings,
        counts=scores.counts,
    )
