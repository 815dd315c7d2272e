"""Per task type: data → embeddings → metrics, plus the per-sample table.

Dispatched by the spec's type (`EVALUATORS[type(task)]`), never by a task's name.
"""

from __future__ import annotations

import collections
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd
import torch

from vtde_bench import metrics as M
from vtde_bench.data import TaskData
from vtde_bench.cache import CacheEntry, EmbeddingCache
from vtde_bench.embed import ImageEmbeddings, embed_images, embed_texts
from vtde_bench.errors import UserError
from vtde_bench.models import Embedder
from vtde_bench.progress import Progress
from vtde_bench.tasks import ClassificationTask, RetrievalTask, Task


@dataclass
class Outcome:
    """What an evaluator measured; the runner adds provenance and makes a `TaskResult`."""

    metrics: dict[str, float]
    samples: pd.DataFrame
    num_images: int
    num_texts: int
    bad_images: list[tuple[str, str]]
    timings: dict[str, float]
    per_class_recall: dict[str, float | None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Scores:
    """What a task type's evaluator computes from the image embeddings."""

    metrics: dict[str, float]
    samples: pd.DataFrame
    num_texts: int
    timings: dict[str, float]  # embed_texts_s, metrics_s
    per_class_recall: dict[str, float | None] | None = None
    warnings: list[str] = field(default_factory=list)  # numbers that are right but may not mean what they seem


@dataclass(frozen=True)
class EmbedOptions:
    batch_size: int = 64
    workers: int | None = None
    skip_bad_images: bool = False
    cache: EmbeddingCache | None = None  # None: compute everything, write nothing
    chunk_rows: int = 1024


def _image_cache(model: Embedder, data: TaskData, options: EmbedOptions) -> CacheEntry | None:
    key = model.cache_key("images") if options.cache is not None else None  # a key serialises the processor: skip it when off
    if key is None:
        return None
    return options.cache.entry({"kind": "images", **key, "rows": data.order_fingerprint})


def _text_cache(model: Embedder, texts: list[str], options: EmbedOptions) -> CacheEntry | None:
    key = model.cache_key("texts") if options.cache is not None else None  # a key serialises the whole tokenizer
    if key is None:
        return None
    digest = hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode()).hexdigest()
    return options.cache.entry({"kind": "texts", **key, "texts": digest})


def _images(model: Embedder, data: TaskData, options: EmbedOptions, progress: Progress) -> ImageEmbeddings:
    return embed_images(
        model, data, batch_size=options.batch_size, workers=options.workers, skip_bad_images=options.skip_bad_images,
        cache=_image_cache(model, data, options), chunk_rows=options.chunk_rows, progress=progress,
    )


def _texts(model: Embedder, texts: list[str], options: EmbedOptions, progress: Progress, description: str) -> torch.Tensor:
    """(len(texts), D) embeddings. Each distinct text is embedded once, so equal texts get equal embeddings
    whatever batch or chunk they would have fallen in (COCO's repeated captions, ImageNet's repeated names)."""
    position: dict[str, int] = {}
    where = [position.setdefault(text, len(position)) for text in texts]
    unique = list(position)
    emb = embed_texts(model, unique, batch_size=max(options.batch_size, 256), cache=_text_cache(model, unique, options),
                      chunk_rows=4 * options.chunk_rows, progress=progress, description=description)
    return emb[torch.tensor(where, dtype=torch.long)] if len(unique) < len(texts) else emb


def class_prompts(classnames: tuple[str, ...], templates: tuple[str, ...]) -> list[str]:
    """Every template filled with every class name, class-major. `{c}` is replaced literally (never
    `str.format`, which would choke on other braces)."""
    return [template.replace("{c}", name) for name in classnames for template in templates]


def class_embeddings(
    model: Embedder, classnames: tuple[str, ...], templates: tuple[str, ...], options: EmbedOptions, progress: Progress
) -> torch.Tensor:
    """(C, D) class embeddings: the mean over templates of normalised prompt embeddings, renormalised."""
    emb = _texts(model, class_prompts(classnames, templates), options, progress, "Embedding class prompts")
    emb = emb.view(len(classnames), len(templates), -1).mean(dim=1)
    return torch.nn.functional.normalize(emb, dim=-1)


def first_twins(classnames: tuple[str, ...], templates: tuple[str, ...]) -> torch.Tensor:
    """(C,) int64: for each class, the lowest index of a class with the same prompts (itself for most).

    CLIP's ImageNet names hold two 'sunglasses' (836, 837) and two 'missile' (657, 744): such classes
    get identical embeddings, and the lowest index wins their tie (`metrics.classification_ranks`).
    """
    prompts = class_prompts(classnames, templates)
    first: dict[tuple[str, ...], int] = {}
    per_class = [tuple(prompts[i * len(templates) : (i + 1) * len(templates)]) for i in range(len(classnames))]
    return torch.tensor([first.setdefault(p, i) for i, p in enumerate(per_class)], dtype=torch.long)


def indistinct_classes(model: Embedder, classnames: tuple[str, ...], templates: tuple[str, ...]) -> list[list[str]]:
    """Groups of differently named classes whose prompts the model's tokenizer turns into the same tokens.

    A tokenizer whose vocabulary lacks the class names maps them all to its unknown token: their
    embeddings are then equal, ties count against the model, and accuracy sits at zero with no error.
    Checked on the first template for every class, then on every template for the suspects.
    Models without a tokenizer (`token_ids`) are not checked.
    """
    token_ids = getattr(model, "token_ids", None)
    if token_ids is None:
        return []

    def groups(classes: list[int], chosen: tuple[str, ...]) -> list[list[int]]:
        ids = token_ids(class_prompts(tuple(classnames[c] for c in classes), chosen))
        by_tokens: dict[tuple, list[int]] = {}
        for k, c in enumerate(classes):
            by_tokens.setdefault(tuple(map(tuple, ids[k * len(chosen) : (k + 1) * len(chosen)])), []).append(c)
        return [g for g in by_tokens.values() if len({classnames[c] for c in g}) > 1]

    suspects = groups(list(range(len(classnames))), templates[:1])
    confirmed = [g for group in suspects for g in groups(group, templates)]
    return [sorted({classnames[c] for c in g}, key=lambda n: classnames.index(n)) for g in confirmed]


def _identity(data: TaskData, rows: list[int]) -> dict[str, list]:
    """Per-sample columns that say which image a query belongs to: its row (unique, unlike keys, which two
    shards may share) and its image's sha256 (the same in every layout: what bootstrap and pairing order by)."""
    columns: dict[str, list] = {"row": rows}
    if data.image_sha256 is not None:
        columns["image_sha256"] = [data.image_sha256[i] for i in rows]
    return columns


def evaluate_classification(
    task: ClassificationTask, model: Embedder, data: TaskData, images: ImageEmbeddings, options: EmbedOptions,
    progress: Progress,
) -> Scores:
    assert data.labels is not None
    started = time.perf_counter()
    warnings = []
    alike = indistinct_classes(model, task.classnames, task.templates)
    if alike:
        names = sum(len(g) for g in alike)
        example = ", ".join(repr(n) for n in alike[0][:3])
        warnings.append(
            f"{names} classes in {len(alike)} group(s) tokenize identically (e.g. {example}): the tokenizer's vocabulary "
            "lacks these words, so the model cannot tell them apart; check the tokenizer or the class names"
        )
    classes = class_embeddings(model, task.classnames, task.templates, options, progress)
    texts_done = time.perf_counter()
    labels = torch.tensor([data.labels[i] for i in images.indices], dtype=torch.long)
    twins = first_twins(task.classnames, task.templates)
    ranks, predictions = M.classification_ranks(images.embeddings, classes, labels, twins=twins)
    n = len(task.classnames)
    metrics = M.classification_metrics(ranks, labels, n)
    recalls = M.per_class_recall(ranks, labels, n).tolist()
    samples = pd.DataFrame(
        {
            "key": [data.keys[i] for i in images.indices],
            **_identity(data, images.indices),
            "label": labels.numpy(),
            "rank": ranks.numpy(),
            "top5": [row for row in predictions.tolist()],
        }
    )
    return Scores(
        metrics=metrics,
        samples=samples,
        num_texts=n * len(task.templates),
        timings={"embed_texts_s": texts_done - started, "metrics_s": time.perf_counter() - texts_done},
        per_class_recall={name: (None if r != r else r) for name, r in zip(class_keys(task.classnames), recalls)},
        warnings=warnings,
    )


def class_keys(classnames: tuple[str, ...]) -> list[str]:
    """One distinct key per class: its name, or `name (index)` for a name several classes share.

    CLIP's ImageNet names repeat two ('missile', 'sunglasses'); keyed by name alone, those
    classes' recalls would overwrite each other.
    """
    seen = collections.Counter(classnames)
    return [f"{name} ({i})" if seen[name] > 1 else name for i, name in enumerate(classnames)]


def evaluate_retrieval(
    task: RetrievalTask, model: Embedder, data: TaskData, images: ImageEmbeddings, options: EmbedOptions,
    progress: Progress,
) -> Scores:
    assert data.captions is not None
    started = time.perf_counter()
    # Captions of skipped images go too: a caption whose image is gone has no true match.
    texts, text_to_image, caption_index = [], [], []
    for position, row in enumerate(images.indices):
        for j, caption in enumerate(data.captions[row]):
            texts.append(caption)
            text_to_image.append(position)
            caption_index.append(j)
    if not texts:
        raise UserError(f"task {task.name}: no captions to retrieve")
    text_emb = _texts(model, texts, options, progress, "Embedding captions")
    texts_done = time.perf_counter()
    image_ranks, text_ranks = M.retrieval_ranks(images.embeddings, text_emb, torch.tensor(text_to_image))
    metrics = M.retrieval_metrics(image_ranks, text_ranks)
    keys = [data.keys[i] for i in images.indices]
    caption_rows = [images.indices[p] for p in text_to_image]
    samples = pd.concat(
        [
            pd.DataFrame({"query": "image", "key": keys, **_identity(data, images.indices), "caption_index": -1,
                          "rank": image_ranks.numpy()}),
            pd.DataFrame(
                {
                    "query": "text",
                    "key": [keys[p] for p in text_to_image],
                    **_identity(data, caption_rows),
                    "caption_index": caption_index,
                    "rank": text_ranks.numpy(),
                }
            ),
        ],
        ignore_index=True,
    )
    return Scores(
        metrics=metrics,
        samples=samples,
        num_texts=len(texts),
        timings={"embed_texts_s": texts_done - started, "metrics_s": time.perf_counter() - texts_done},
    )


EVALUATORS: dict[type, Callable[..., Scores]] = {
    ClassificationTask: evaluate_classification,
    RetrievalTask: evaluate_retrieval,
}


def evaluate_task(task: Task, model: Embedder, data: TaskData, options: EmbedOptions, progress: Progress) -> Outcome:
    """Embed the task's images, then score them the task type's way."""
    started = time.perf_counter()
    images = _images(model, data, options, progress)
    embed_images_s = time.perf_counter() - started
    scores = EVALUATORS[type(task)](task, model, data, images, options, progress)
    return Outcome(
        metrics=scores.metrics,
        samples=scores.samples,
        num_images=len(images.indices),
        num_texts=scores.num_texts,
        bad_images=images.bad,
        timings={"embed_images_s": embed_images_s, **scores.timings},
        per_class_recall=scores.per_class_recall,
        extra={"image_chunks": images.chunks, "image_chunks_from_cache": images.cached_chunks},
        warnings=scores.warnings,
    )
