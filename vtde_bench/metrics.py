"""Metric functions: pure, on tensors, no I/O.

One rule for ties everywhere: a query's rank is 1 + the number of *wrong*
candidates scoring at least as high as its best true match. Ties therefore
count against the model, and no result depends on the order of the gallery.
(When a query has several true matches, e.g. an image with five captions,
another true match tying with the best one is not a mistake, so only wrong
candidates are counted.) The one exception: classes whose prompts are identical
(CLIP's two ImageNet 'sunglasses') tie by construction, and the lowest index wins.

Similarities are computed in chunks of queries so that memory stays bounded
by ``chunk_size x gallery`` however large the gallery.
"""

from __future__ import annotations

import torch
from torch import Tensor

DEFAULT_CHUNK = 1024


def _count(hits: Tensor) -> Tensor:
    """True entries per row, as int64 (summing in int32 is ~3x faster than bool's default int64 sum)."""
    return hits.sum(1, dtype=torch.int32).long()


def _check_embeddings(*tensors: Tensor) -> None:
    widths = {t.shape[-1] for t in tensors}
    for t in tensors:
        if t.ndim != 2:
            raise ValueError(f"embeddings must be 2-D (n, dim), got shape {tuple(t.shape)}")
    if len(widths) != 1:
        raise ValueError(f"embeddings have different widths: {sorted(widths)}")


def _check_twins(twins: Tensor, num_classes: int) -> Tensor:
    twins = twins.to(torch.long)
    index = torch.arange(num_classes)
    if twins.shape != (num_classes,) or (twins < 0).any() or (twins > index).any() or (twins[twins] != twins).any():
        raise ValueError("twins must give, for each of the C classes, the lowest index of its identical classes")
    return twins


def _top(scores: Tensor, k: int) -> Tensor:
    """The k best classes per row, best first; equal scores in index order (as the rank rule breaks twins' ties)."""
    values, indices = scores.topk(k, dim=1)
    by_index = indices.argsort(dim=1)
    values, indices = values.gather(1, by_index), indices.gather(1, by_index)
    return indices.gather(1, (-values).argsort(dim=1, stable=True))


def classification_ranks(
    image_emb: Tensor, class_emb: Tensor, labels: Tensor, *, twins: Tensor | None = None, top: int = 5,
    chunk_size: int = DEFAULT_CHUNK,
) -> tuple[Tensor, Tensor]:
    """Rank of the true class for each image, and the top predictions.

    Args:
        image_emb: (N, D) image embeddings.
        class_emb: (C, D) class embeddings.
        labels: (N,) true class indices in [0, C).
        twins: (C,) int64, for each class the lowest index of the classes with the same prompts (itself
            for most). Such classes score alike (their scores are made bit-equal here), and the lowest
            index wins their tie: the one exception to ties counting against the model, and what
            CLIP_benchmark's `topk` gives, so what published numbers contain.
        top: how many predictions to return per image (at most C).

    Returns:
        ranks: (N,) int64, 1 = the true class scored strictly highest (or tied only with its later twins).
        predictions: (N, min(top, C)) int64 class indices, best first.

    >>> img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> cls = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    >>> classification_ranks(img, cls, torch.tensor([0, 0]))[0].tolist()
    [1, 2]
    >>> twin = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # classes 0 and 1 share their prompts
    >>> classification_ranks(img[:1].repeat(2, 1), twin, torch.tensor([0, 1]), twins=torch.tensor([0, 0]))[0].tolist()
    [1, 2]
    """
    _check_embeddings(image_emb, class_emb)
    labels = labels.to(torch.long)
    num_classes = class_emb.shape[0]
    if labels.shape != (image_emb.shape[0],):  # a (1,) tensor would otherwise broadcast silently
        raise ValueError(f"labels must have shape ({image_emb.shape[0]},), one per image, got {tuple(labels.shape)}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    later_twins = None
    if twins is not None:
        twins = _check_twins(twins, num_classes)
        later_twins = torch.bincount(twins[twins != torch.arange(num_classes)], minlength=num_classes)
    class_emb = class_emb.float()
    ranks, preds = [], []
    k = min(top, num_classes)
    for start in range(0, image_emb.shape[0], chunk_size):
        scores = image_emb[start : start + chunk_size].float() @ class_emb.T
        chunk_labels = labels[start : start + chunk_size]
        if twins is not None:
            scores = scores[:, twins]  # a twin takes its first's score, bit for bit, whatever the matrix kernel did
        true = scores.gather(1, chunk_labels[:, None])
        rank = _count(scores >= true)  # the true class counts itself once
        if later_twins is not None:
            rank = rank - later_twins[chunk_labels]  # its later twins tie exactly, and lose the tie to it
        ranks.append(rank)
        preds.append(_top(scores, k))
    if not ranks:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, k, dtype=torch.long)
    return torch.cat(ranks), torch.cat(preds)


def hits_at_k(ranks: Tensor, k: int) -> tuple[int, int]:
    """(queries whose rank is at most k, queries): the counts behind `recall_at_k`.

    >>> hits_at_k(torch.tensor([1, 2, 7]), 5)
    (2, 3)
    """
    if ranks.numel() == 0:
        raise ValueError("no queries to score")
    return int((ranks <= k).sum()), ranks.numel()


def recall_at_k(ranks: Tensor, k: int) -> float:
    """Fraction of queries whose rank is at most k (top-k accuracy, or recall@k).

    >>> recall_at_k(torch.tensor([1, 2, 7]), 5)
    0.6666666666666666
    """
    hits, n = hits_at_k(ranks, k)
    return hits / n  # integer over integer, rounded once: not a float32 mean


def exact_mean(fractions: list[tuple[int, int]]) -> float:
    """The mean of fractions given as (numerator, denominator), in rational arithmetic, rounded once to a float.

    Summing float fractions drifts in the last bits (0.9460000000000001 for a mean that is 473/500).

    >>> exact_mean([(473, 500)] * 3), sum([473 / 500] * 3) / 3
    (0.946, 0.9460000000000001)
    >>> exact_mean([(1, 10), (2, 10)])
    0.15
    """
    from fractions import Fraction

    if not fractions:
        raise ValueError("no fractions to average")
    return float(sum((Fraction(h, n) for h, n in fractions), Fraction(0)) / len(fractions))


def per_class_recall(ranks: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Top-1 recall of each class: the fraction of its images classified correctly.

    Returns:
        (num_classes,) float, NaN for classes with no images.

    >>> per_class_recall(torch.tensor([1, 2, 1]), torch.tensor([0, 0, 1]), 3).tolist()
    [0.5, 1.0, nan]
    """
    labels = labels.to(torch.long)
    hits = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, labels, (ranks == 1).double())
    counts = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, labels, torch.ones(labels.shape[0], dtype=torch.float64))
    return torch.where(counts > 0, hits / counts.clamp(min=1), torch.full_like(hits, float("nan")))


def mean_per_class_recall(ranks: Tensor, labels: Tensor, num_classes: int) -> float:
    """Mean of `per_class_recall` over the classes that have images (balanced accuracy), computed exactly.

    >>> mean_per_class_recall(torch.tensor([1, 2, 1]), torch.tensor([0, 0, 1]), 3)
    0.75
    """
    labels = labels.to(torch.long)
    hits = torch.bincount(labels[ranks == 1], minlength=num_classes).tolist()
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    return exact_mean([(h, n) for h, n in zip(hits, counts) if n > 0])


def retrieval_ranks(
    image_emb: Tensor, text_emb: Tensor, text_to_image: Tensor, *, chunk_size: int = DEFAULT_CHUNK
) -> tuple[Tensor, Tensor]:
    """Ranks for image→text and text→image retrieval.

    Recall@k in CLIP papers means "at least one true caption in the top k": an
    image query's rank is that of its best-scoring caption.

    Args:
        image_emb: (N, D) image embeddings.
        text_emb: (T, D) caption embeddings.
        text_to_image: (T,) index of each caption's image, in [0, N). Every
            image must have at least one caption.

    Returns:
        image_ranks: (N,) int64 rank of each image query's best true caption among all T captions.
        text_ranks: (T,) int64 rank of each caption query's image among all N images.

    >>> img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> txt = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    >>> [r.tolist() for r in retrieval_ranks(img, txt, torch.tensor([0, 1, 0]))]  # image 1 ties with image 0's caption 2
    [[1, 2], [1, 1, 2]]
    """
    _check_embeddings(image_emb, text_emb)
    n_images = image_emb.shape[0]
    text_to_image = text_to_image.to(torch.long)
    if text_to_image.numel() != text_emb.shape[0]:
        raise ValueError("text_to_image must have one entry per caption")
    if n_images == 0:
        raise ValueError("no images to score")
    # Range first: bincount raises a RuntimeError on negative indices.
    in_range = text_to_image.numel() > 0 and text_to_image.min() >= 0 and text_to_image.max() < n_images
    if not in_range or torch.bincount(text_to_image, minlength=n_images).min() < 1:
        raise ValueError("every image needs at least one caption, and every caption an image in [0, N)")
    image_emb, text_emb = image_emb.float(), text_emb.float()

    image_ranks = []
    for start in range(0, n_images, chunk_size):
        scores = image_emb[start : start + chunk_size] @ text_emb.T  # (B, T)
        # Each image's own captions, read from `scores` itself so that ties compare equal numbers.
        own = ((text_to_image >= start) & (text_to_image < start + scores.shape[0])).nonzero().squeeze(1)
        rows = text_to_image[own] - start
        true = scores[rows, own]
        best = torch.full((scores.shape[0],), float("-inf")).scatter_reduce(0, rows, true, "amax")
        # Count every caption scoring >= the best true one, then take back the image's own such captions.
        own_at_best = torch.bincount(rows[true >= best[rows]], minlength=scores.shape[0])
        image_ranks.append(1 + _count(scores >= best[:, None]) - own_at_best)

    text_ranks = []
    for start in range(0, text_emb.shape[0], chunk_size):
        scores = text_emb[start : start + chunk_size] @ image_emb.T  # (B, N)
        true = scores.gather(1, text_to_image[start : start + chunk_size, None])
        text_ranks.append(_count(scores >= true))  # one true image, which counts itself
    return torch.cat(image_ranks), torch.cat(text_ranks)


def assigned_classes(image_emb: Tensor, class_emb: Tensor, labels: Tensor, *, twins: Tensor | None = None,
                     chunk_size: int = DEFAULT_CHUNK) -> Tensor:
    """The one class each image is assigned (what per-class precision and F1 count): its true class when its rank
    is 1 (`classification_ranks`), else the best-scoring other class, the lowest index among equals. Ties thus
    count against the model here too: a true class tied with another is never the assignment.

    >>> img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> cls = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # classes 0 and 1 tie on the first image
    >>> assigned_classes(img, cls, torch.tensor([0, 2])).tolist()
    [1, 2]
    """
    _check_embeddings(image_emb, class_emb)
    labels = labels.to(torch.long)
    num_classes = class_emb.shape[0]
    roots = _check_twins(twins, num_classes) if twins is not None else torch.arange(num_classes)
    index = torch.arange(num_classes)
    class_emb = class_emb.float()
    out = []
    for start in range(0, image_emb.shape[0], chunk_size):
        scores = (image_emb[start : start + chunk_size].float() @ class_emb.T)[:, roots]
        chunk = labels[start : start + chunk_size]
        true = scores.gather(1, chunk[:, None]).squeeze(1)
        # The true class and its later twins (which lose their tie to it) are not "another class".
        own = (roots[None, :] == roots[chunk][:, None]) & (index[None, :] >= chunk[:, None])
        others = scores.masked_fill(own, float("-inf"))
        best = others.max(dim=1).values
        first = (others == best[:, None]).int().argmax(dim=1)  # the lowest index among the best others
        out.append(torch.where(best >= true, first, chunk))  # another class at least as high: rank > 1
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def macro_f1(labels: Tensor, assigned: Tensor) -> float:
    """Mean F1 over the classes present in `labels` (WILDS' F1-macro: scikit-learn's `f1_score(average="macro",
    labels=unique(y_true))`), computed exactly. A class's F1 is 2·TP / (its images + the images assigned to it);
    images assigned to a class absent from `labels` count as that image's class's misses, nowhere else.

    >>> macro_f1(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]))  # F1: 2/3 and 2/3
    0.6666666666666666
    """
    labels, assigned = labels.to(torch.long), assigned.to(torch.long)
    if labels.numel() == 0:
        raise ValueError("no images to score")
    size = int(max(labels.max(), assigned.max())) + 1
    true_pos = torch.bincount(labels[labels == assigned], minlength=size).tolist()
    support = torch.bincount(labels, minlength=size).tolist()
    predicted = torch.bincount(assigned, minlength=size).tolist()
    return exact_mean([(2 * tp, n + p) for tp, n, p in zip(true_pos, support, predicted) if n > 0])


def group_counts(hits: Tensor, groups: Tensor) -> dict[int, tuple[int, int]]:
    """(hits, images) of each group that has images, by group index (negative indices are no group).

    >>> group_counts(torch.tensor([True, False, True]), torch.tensor([0, 0, 2]))
    {0: (1, 2), 2: (1, 1)}
    """
    groups = groups.to(torch.long)
    keep = groups >= 0
    if not keep.any():
        return {}
    hits, groups = hits[keep].long(), groups[keep]
    n = torch.bincount(groups).tolist()
    h = torch.bincount(groups, weights=hits.double()).long().tolist()
    return {g: (h[g], n[g]) for g in range(len(n)) if n[g] > 0}


def worst_group(counts: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """The (hits, images) of the group with the lowest hit rate (the lowest index among equals).

    >>> worst_group({0: (1, 2), 2: (1, 1), 3: (2, 4)})
    (1, 2)
    """
    from fractions import Fraction

    if not counts:
        raise ValueError("no group has images")
    return counts[min(counts, key=lambda g: (Fraction(*counts[g]), g))]
