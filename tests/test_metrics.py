"""Tests for `vtde_bench.metrics` against a naive reference written with plain loops.

The tie rule under test: a query's rank is 1 + the number of *wrong* candidates
scoring >= its best true match (ties count against the model; another true
caption tying with the best one is not counted). Most data here is integer
valued, so float32 dot products are exact and the naive reference (float64,
Python loops) must agree exactly, ties included.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import vtde_bench.metrics as M
from vtde_bench.kinds.classification import scores_from_ranks as classification_metrics
from vtde_bench.kinds.retrieval import scores_from_ranks as retrieval_metrics

HYPOTHESIS = settings(max_examples=60, deadline=None, derandomize=True)


# ----------------------------------------------------------------------------- naive reference


def naive_classification_ranks(image_emb, class_emb, labels) -> list[int]:
    """1 + number of wrong classes scoring >= the true class, one image at a time."""
    img = np.asarray(image_emb, dtype=np.float64)
    cls = np.asarray(class_emb, dtype=np.float64)
    all_scores = (img @ cls.T).tolist()  # exact: the test data is integer valued
    ranks = []
    for i in range(img.shape[0]):
        scores = all_scores[i]
        true = scores[int(labels[i])]
        ranks.append(1 + sum(1 for c, s in enumerate(scores) if c != int(labels[i]) and s >= true))
    return ranks


def naive_retrieval_ranks(image_emb, text_emb, text_to_image) -> tuple[list[int], list[int]]:
    """Image→text: best true caption vs wrong captions; text→image: true image vs the other images."""
    img = np.asarray(image_emb, dtype=np.float64)
    txt = np.asarray(text_emb, dtype=np.float64)
    t2i = [int(x) for x in text_to_image]
    all_scores = (img @ txt.T).tolist()  # (N, T)
    image_ranks = []
    for i in range(img.shape[0]):
        scores = all_scores[i]
        best = max(scores[j] for j in range(len(t2i)) if t2i[j] == i)
        image_ranks.append(1 + sum(1 for j in range(len(t2i)) if t2i[j] != i and scores[j] >= best))
    text_ranks = []
    for j in range(txt.shape[0]):
        scores = [all_scores[i][j] for i in range(img.shape[0])]
        true = scores[t2i[j]]
        text_ranks.append(1 + sum(1 for i in range(img.shape[0]) if i != t2i[j] and scores[i] >= true))
    return image_ranks, text_ranks


def naive_recall(ranks, k) -> float:
    ranks = [int(r) for r in ranks]
    return sum(1 for r in ranks if r <= k) / len(ranks)


def naive_per_class_recall(ranks, labels, num_classes) -> list[float]:
    out = []
    for c in range(num_classes):
        mine = [int(r) for r, y in zip(ranks, labels) if int(y) == c]
        out.append(float("nan") if not mine else sum(1 for r in mine if r == 1) / len(mine))
    return out


def same_floats(a, b) -> bool:
    """Equal lists of floats, NaN equal to NaN."""
    return len(a) == len(b) and all((math.isnan(x) and math.isnan(y)) or math.isclose(x, y, abs_tol=1e-12) for x, y in zip(a, b))


# ----------------------------------------------------------------------------- seeded data


def int_tensor(rng: np.random.Generator, shape, levels: int) -> torch.Tensor:
    """Integer-valued float32 entries in [-levels, levels]: exact dot products, ties when levels is small."""
    return torch.tensor(rng.integers(-levels, levels + 1, size=shape), dtype=torch.float32)


def classification_problem(seed: int, n: int, c: int, dim: int, levels: int):
    rng = np.random.default_rng(seed)
    classes = int_tensor(rng, (c, dim), levels)
    labels = torch.tensor(rng.integers(0, c, size=n), dtype=torch.long)
    # Images near their class so ranks spread over 1..C instead of being uniform.
    images = classes[labels] + int_tensor(rng, (n, dim), levels)
    return images, classes, labels


def retrieval_problem(seed: int, n: int, dim: int, levels: int, max_captions: int = 6):
    """n images with 1..max_captions captions each (unequal), captions shuffled."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, max_captions + 1, size=n)
    counts[0] = 1
    counts[-1] = max_captions  # both extremes present
    t2i = np.repeat(np.arange(n), counts)
    rng.shuffle(t2i)
    images = int_tensor(rng, (n, dim), levels)
    texts = images[torch.tensor(t2i)] + int_tensor(rng, (len(t2i), dim), levels)
    return images, texts, torch.tensor(t2i, dtype=torch.long)


def tied_retrieval_problem(seed: int, n: int, dim: int):
    """Embeddings quantised to {-1, 0, 1}, with duplicate captions and duplicate images: many exact ties."""
    images, texts, t2i = retrieval_problem(seed, n, dim, levels=1)
    texts = texts.clamp(-1, 1)
    rng = np.random.default_rng(seed + 1)
    for _ in range(max(1, len(t2i) // 3)):  # duplicate captions, within and across images
        a, b = rng.integers(0, len(t2i), size=2)
        texts[a] = texts[b]
    for _ in range(max(1, n // 3)):  # duplicate images
        a, b = rng.integers(0, n, size=2)
        images[a] = images[b]
    return images, texts, t2i


# ----------------------------------------------------------------------------- agreement with the naive reference

SIZES = [(1, 1), (1, 4), (7, 3), (23, 6), (40, 10)]  # (images, classes)
CHUNKS = [1, 5, 23, 10_000]  # smaller than, equal to (for 23), larger than the number of queries


@pytest.mark.parametrize("n,c", SIZES)
@pytest.mark.parametrize("dim", [1, 3, 16])
@pytest.mark.parametrize("chunk", CHUNKS)
def test_classification_ranks_match_naive_reference(n, c, dim, chunk):
    """Rank of the true class = 1 + wrong classes scoring >= it, for every size, width and chunk size."""
    images, classes, labels = classification_problem(seed=n * 100 + c * 10 + dim, n=n, c=c, dim=dim, levels=20)
    ranks, preds = M.classification_ranks(images, classes, labels, chunk_size=chunk)
    assert ranks.dtype == torch.int64 and preds.dtype == torch.int64
    assert ranks.tolist() == naive_classification_ranks(images, classes, labels)
    assert preds.shape == (n, min(5, c))


@pytest.mark.parametrize("levels", [1, 2])
@pytest.mark.parametrize("chunk", CHUNKS)
def test_classification_ranks_with_many_ties_match_naive_reference(levels, chunk):
    """Quantised embeddings and duplicate classes: ties count against the model, as in the reference."""
    images, classes, labels = classification_problem(seed=levels, n=31, c=8, dim=2, levels=levels)
    classes[5] = classes[2]  # duplicate class embeddings: an image of class 2 ties with class 5
    images[7] = images[3]
    ranks, _ = M.classification_ranks(images, classes, labels, chunk_size=chunk)
    expected = naive_classification_ranks(images, classes, labels)
    assert ranks.tolist() == expected
    assert max(expected) > 1  # the data really has ties / errors to rank


@pytest.mark.parametrize("n", [1, 2, 9, 30])
@pytest.mark.parametrize("dim", [1, 4, 16])
@pytest.mark.parametrize("chunk", [1, 4, 9, 10_000])
def test_retrieval_ranks_match_naive_reference(n, dim, chunk):
    """Image→text (best of 1..6 captions) and text→image ranks agree with the reference for every chunk size."""
    images, texts, t2i = retrieval_problem(seed=n * 31 + dim, n=n, dim=dim, levels=20)
    image_ranks, text_ranks = M.retrieval_ranks(images, texts, t2i, chunk_size=chunk)
    exp_img, exp_txt = naive_retrieval_ranks(images, texts, t2i)
    assert image_ranks.dtype == torch.int64 and text_ranks.dtype == torch.int64
    assert image_ranks.tolist() == exp_img
    assert text_ranks.tolist() == exp_txt


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("chunk", [1, 3, 10_000])
def test_retrieval_ranks_with_ties_and_duplicates_match_naive_reference(seed, chunk):
    """Quantised embeddings, duplicate captions and duplicate images: the tie rule matches the reference."""
    images, texts, t2i = tied_retrieval_problem(seed, n=12, dim=2)
    image_ranks, text_ranks = M.retrieval_ranks(images, texts, t2i, chunk_size=chunk)
    exp_img, exp_txt = naive_retrieval_ranks(images, texts, t2i)
    assert image_ranks.tolist() == exp_img
    assert text_ranks.tolist() == exp_txt


def test_float_embeddings_match_reference_away_from_near_ties():
    """Normalised gaussian embeddings: agreement wherever no score lies within float32 rounding of the threshold."""
    rng = np.random.default_rng(0)
    n, dim = 25, 12
    images = torch.nn.functional.normalize(torch.tensor(rng.standard_normal((n, dim)), dtype=torch.float32), dim=1)
    t2i = torch.tensor(np.repeat(np.arange(n), rng.integers(1, 7, size=n)))
    texts = torch.nn.functional.normalize(images[t2i] + torch.tensor(rng.standard_normal((len(t2i), dim)), dtype=torch.float32), dim=1)
    image_ranks, text_ranks = M.retrieval_ranks(images, texts, t2i, chunk_size=7)
    exp_img, exp_txt = naive_retrieval_ranks(images, texts, t2i)
    s = images.double().numpy() @ texts.double().numpy().T
    checked = 0
    for i in range(n):
        best = s[i][t2i.numpy() == i].max()
        if np.abs(s[i] - best).min(initial=1.0, where=t2i.numpy() != i) > 1e-5:
            assert image_ranks[i].item() == exp_img[i]
            checked += 1
    for j in range(len(t2i)):
        true = s[t2i[j], j]
        others = np.delete(s[:, j], t2i[j])
        if others.size == 0 or np.abs(others - true).min() > 1e-5:
            assert text_ranks[j].item() == exp_txt[j]
            checked += 1
    assert checked > 0.9 * (n + len(t2i))  # near-ties are rare: the comparison is not vacuous


def test_low_precision_inputs_give_the_same_ranks_as_float32():
    """bf16/fp16 embeddings are scored in float32: same ranks as float32 copies of the same values."""
    images, texts, t2i = retrieval_problem(seed=3, n=10, dim=4, levels=3)
    ref = M.retrieval_ranks(images, texts, t2i)
    for dtype in (torch.bfloat16, torch.float16):
        got = M.retrieval_ranks(images.to(dtype), texts.to(dtype), t2i)
        assert [r.tolist() for r in got] == [r.tolist() for r in ref]
    imgs, classes, labels = classification_problem(seed=3, n=10, c=6, dim=4, levels=3)
    assert M.classification_ranks(imgs.half(), classes.half(), labels)[0].tolist() == M.classification_ranks(imgs, classes, labels)[0].tolist()


def test_top_predictions_are_the_highest_scoring_classes():
    """predictions[:, j] has the j-th highest score; a rank-1 image's first prediction is its label."""
    images, classes, labels = classification_problem(seed=5, n=20, c=9, dim=5, levels=20)
    ranks, preds = M.classification_ranks(images, classes, labels, top=4, chunk_size=6)
    scores = (images.double() @ classes.double().T).numpy()
    for i in range(20):
        got = [scores[i, p] for p in preds[i].tolist()]
        assert got == sorted(scores[i], reverse=True)[:4]
        if ranks[i] == 1:
            assert preds[i, 0].item() == labels[i].item()
    assert M.classification_ranks(images, classes[:3], labels % 3, top=5)[1].shape == (20, 3)  # at most C


# ----------------------------------------------------------------------------- known answers


def test_classification_known_answer_ties_count_against_the_model():
    """Hand-computed: a tie with a wrong class costs a rank."""
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    cls = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # scores: [1, 0, -1], [0, 1, 0], [1, 1, -1]
    ranks, preds = M.classification_ranks(img, cls, torch.tensor([0, 0, 1]))
    assert ranks.tolist() == [1, 3, 2]
    assert preds[0].tolist() == [0, 1, 2]


def test_retrieval_known_answer():
    """Hand-computed ranks with ties in both directions, and a duplicate caption."""
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    txt = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    t2i = torch.tensor([0, 0, 1, 2])
    # image x caption scores: [1,0,0,1], [0,1,1,1], [1,1,1,2]
    image_ranks, text_ranks = M.retrieval_ranks(img, txt, t2i)
    assert image_ranks.tolist() == [2, 3, 1]
    assert text_ranks.tolist() == [2, 3, 2, 1]
    metrics = retrieval_metrics(image_ranks, text_ranks)
    assert metrics["image_to_text_recall@1"] == pytest.approx(1 / 3)
    assert metrics["text_to_image_recall@1"] == pytest.approx(1 / 4)
    assert metrics["mean_recall@1"] == pytest.approx(7 / 24)
    assert metrics["image_to_text_recall@5"] == 1.0 and metrics["text_to_image_recall@10"] == 1.0


def test_another_true_caption_tying_with_the_best_is_not_a_mistake():
    """Two identical captions of the same image tie at the top: the image still ranks 1."""
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    image_ranks, text_ranks = M.retrieval_ranks(img, txt, torch.tensor([0, 0, 1]))
    assert image_ranks.tolist() == [1, 1]
    assert text_ranks.tolist() == [1, 1, 1]


def test_duplicate_images_both_rank_two():
    """Two identical images: each caption ties with the other image, so every query ranks 2."""
    img = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    txt = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    image_ranks, text_ranks = M.retrieval_ranks(img, txt, torch.tensor([0, 1]))
    assert image_ranks.tolist() == [2, 2]
    assert text_ranks.tolist() == [2, 2]


def test_all_identical_embeddings_rank_last():
    """Everything ties: every query ranks behind all wrong candidates."""
    ranks, _ = M.classification_ranks(torch.ones(4, 3), torch.ones(6, 3), torch.tensor([0, 1, 2, 5]))
    assert ranks.tolist() == [6, 6, 6, 6]
    image_ranks, text_ranks = M.retrieval_ranks(torch.ones(3, 2), torch.ones(5, 2), torch.tensor([0, 0, 1, 2, 2]))
    assert image_ranks.tolist() == [4, 5, 4]  # 5 captions minus own ones, plus one
    assert text_ranks.tolist() == [3] * 5


def test_recall_and_per_class_known_answers():
    """Hand-computed recall@k, per-class recall (NaN for an empty class) and their mean."""
    ranks = torch.tensor([1, 2, 1, 7, 1])
    labels = torch.tensor([0, 0, 1, 1, 3])
    assert M.recall_at_k(ranks, 1) == 3 / 5
    assert M.recall_at_k(ranks, 2) == 4 / 5
    assert M.recall_at_k(ranks, 7) == 1.0
    pcr = M.per_class_recall(ranks, labels, 5).tolist()
    assert pcr[:2] == [0.5, 0.5] and math.isnan(pcr[2]) and pcr[3] == 1.0 and math.isnan(pcr[4])
    assert M.mean_per_class_recall(ranks, labels, 5) == pytest.approx(2 / 3)
    assert classification_metrics(ranks, labels, 5) == pytest.approx({"acc1": 0.6, "acc5": 0.8, "mean_per_class_recall": 2 / 3})


# ----------------------------------------------------------------------------- order invariance and chunking


def _inverse(perm: np.ndarray) -> np.ndarray:
    inv = np.empty_like(perm)
    inv[perm] = np.arange(len(perm))
    return inv


@pytest.mark.parametrize("seed", range(5))
def test_permuting_the_classes_never_changes_classification_ranks(seed):
    """Gallery order invariance for classification, on tie-heavy data."""
    images, classes, labels = classification_problem(seed, n=30, c=7, dim=2, levels=1)
    ranks, _ = M.classification_ranks(images, classes, labels)
    perm = np.random.default_rng(seed).permutation(7)
    new_labels = torch.tensor(_inverse(perm))[labels]  # class c now sits at position inv[c]
    ranks2, _ = M.classification_ranks(images, classes[torch.tensor(perm)], new_labels, chunk_size=4)
    assert ranks2.tolist() == ranks.tolist()
    assert classification_metrics(ranks2, labels, 7) == classification_metrics(ranks, labels, 7)


@pytest.mark.parametrize("seed", range(5))
def test_permuting_captions_or_images_never_changes_retrieval_metrics(seed):
    """Gallery order invariance for retrieval, with text_to_image permuted consistently, on tie-heavy data."""
    images, texts, t2i = tied_retrieval_problem(seed, n=10, dim=2)
    image_ranks, text_ranks = M.retrieval_ranks(images, texts, t2i)
    metrics = retrieval_metrics(image_ranks, text_ranks)
    rng = np.random.default_rng(seed)

    pc = rng.permutation(len(t2i))  # captions
    ir, tr = M.retrieval_ranks(images, texts[torch.tensor(pc)], t2i[torch.tensor(pc)], chunk_size=3)
    assert ir.tolist() == image_ranks.tolist()
    assert tr.tolist() == text_ranks[torch.tensor(pc)].tolist()
    assert retrieval_metrics(ir, tr) == metrics

    pi = rng.permutation(len(images))  # images
    ir, tr = M.retrieval_ranks(images[torch.tensor(pi)], texts, torch.tensor(_inverse(pi))[t2i], chunk_size=4)
    assert ir.tolist() == image_ranks[torch.tensor(pi)].tolist()
    assert tr.tolist() == text_ranks.tolist()
    assert retrieval_metrics(ir, tr) == metrics


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 65, 1000])
def test_chunked_equals_unchunked_on_float_embeddings(chunk):
    """Chunking the queries changes nothing, on ordinary float embeddings too."""
    rng = np.random.default_rng(7)
    images = torch.tensor(rng.standard_normal((64, 32)), dtype=torch.float32)
    classes = torch.tensor(rng.standard_normal((10, 32)), dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, 10, size=64))
    t2i = torch.tensor(np.repeat(np.arange(64), rng.integers(1, 7, size=64)))
    texts = images[t2i] + torch.tensor(rng.standard_normal((len(t2i), 32)), dtype=torch.float32)
    full = M.classification_ranks(images, classes, labels, chunk_size=10_000)[0]
    assert torch.equal(M.classification_ranks(images, classes, labels, chunk_size=chunk)[0], full)
    full_r = M.retrieval_ranks(images, texts, t2i, chunk_size=10_000)
    got_r = M.retrieval_ranks(images, texts, t2i, chunk_size=chunk)
    assert torch.equal(got_r[0], full_r[0]) and torch.equal(got_r[1], full_r[1])


# ----------------------------------------------------------------------------- summary metrics against naive computations


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("c", [2, 4, 5, 12])
def test_classification_metrics_match_naive(seed, c):
    """acc1, acc5 (only with >= 5 classes), per-class recall with NaN for empty classes, and their mean."""
    images, classes, labels = classification_problem(seed, n=17, c=c, dim=3, levels=2)
    labels[labels == c - 1] = 0  # leave the last class without images
    ranks, _ = M.classification_ranks(images, classes, labels)
    pcr = naive_per_class_recall(ranks, labels, c)
    assert math.isnan(pcr[-1])
    assert same_floats(M.per_class_recall(ranks, labels, c).tolist(), pcr)
    present = [x for x in pcr if not math.isnan(x)]
    expected = {"acc1": naive_recall(ranks, 1), "mean_per_class_recall": sum(present) / len(present)}
    if c >= 5:
        expected["acc5"] = naive_recall(ranks, 5)
    got = classification_metrics(ranks, labels, c)
    assert set(got) == set(expected)
    assert got == pytest.approx(expected, abs=1e-12)
    assert all(0.0 <= v <= 1.0 for v in got.values())
    assert all(type(v) is float for v in got.values())


@pytest.mark.parametrize("seed", range(4))
def test_retrieval_metrics_match_naive(seed):
    """Recall@{1,5,10} both ways and mean_recall@1 = mean of the two R@1, as fractions."""
    images, texts, t2i = retrieval_problem(seed, n=15, dim=3, levels=2)
    image_ranks, text_ranks = M.retrieval_ranks(images, texts, t2i)
    got = retrieval_metrics(image_ranks, text_ranks)
    expected = {}
    for k in (1, 5, 10):
        expected[f"image_to_text_recall@{k}"] = naive_recall(image_ranks, k)
        expected[f"text_to_image_recall@{k}"] = naive_recall(text_ranks, k)
    expected["mean_recall@1"] = (expected["image_to_text_recall@1"] + expected["text_to_image_recall@1"]) / 2
    assert got == pytest.approx(expected, abs=1e-12)
    assert set(got) == set(expected)
    assert all(0.0 <= v <= 1.0 for v in got.values())
    for way in ("image_to_text", "text_to_image"):
        assert got[f"{way}_recall@1"] <= got[f"{way}_recall@5"] <= got[f"{way}_recall@10"]


def test_recall_at_k_is_exact_and_monotonic_in_k():
    """recall@k is count/len exactly (no float32 mean), non-decreasing in k, and 1.0 at the largest rank."""
    ranks = torch.tensor(np.random.default_rng(1).integers(1, 50, size=1001))
    values = [M.recall_at_k(ranks, k) for k in range(0, 52)]
    assert values == [naive_recall(ranks, k) for k in range(0, 52)]
    assert values == sorted(values) and values[0] == 0.0 and values[-1] == 1.0


def test_mean_per_class_recall_ignores_empty_classes():
    """Balanced accuracy averages only classes that have images, not NaN and not zeros."""
    ranks = torch.tensor([1, 1, 2])
    labels = torch.tensor([0, 0, 2])
    assert M.mean_per_class_recall(ranks, labels, 10) == pytest.approx(0.5)


# ----------------------------------------------------------------------------- property-based


@st.composite
def classification_inputs(draw):
    n = draw(st.integers(1, 8))
    c = draw(st.integers(1, 7))
    dim = draw(st.integers(1, 3))
    levels = draw(st.integers(1, 3))
    values = st.integers(-levels, levels)
    images = draw(st.lists(st.lists(values, min_size=dim, max_size=dim), min_size=n, max_size=n))
    classes = draw(st.lists(st.lists(values, min_size=dim, max_size=dim), min_size=c, max_size=c))
    labels = draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n))
    perm = draw(st.permutations(range(c)))
    chunk = draw(st.integers(1, 10))
    return (torch.tensor(images, dtype=torch.float32), torch.tensor(classes, dtype=torch.float32),
            torch.tensor(labels, dtype=torch.long), np.array(perm), chunk)


@st.composite
def retrieval_inputs(draw):
    n = draw(st.integers(1, 6))
    dim = draw(st.integers(1, 3))
    levels = draw(st.integers(1, 3))
    counts = draw(st.lists(st.integers(1, 6), min_size=n, max_size=n))
    t2i = [i for i, k in enumerate(counts) for _ in range(k)]
    order = draw(st.permutations(range(len(t2i))))
    t2i = [t2i[o] for o in order]
    values = st.integers(-levels, levels)
    images = draw(st.lists(st.lists(values, min_size=dim, max_size=dim), min_size=n, max_size=n))
    texts = draw(st.lists(st.lists(values, min_size=dim, max_size=dim), min_size=len(t2i), max_size=len(t2i)))
    chunk = draw(st.integers(1, 8))
    caption_perm = np.array(draw(st.permutations(range(len(t2i)))))
    image_perm = np.array(draw(st.permutations(range(n))))
    return (torch.tensor(images, dtype=torch.float32), torch.tensor(texts, dtype=torch.float32),
            torch.tensor(t2i, dtype=torch.long), chunk, caption_perm, image_perm)


@HYPOTHESIS
@given(classification_inputs())
def test_property_classification_ranks(inputs):
    """Any small tie-heavy input: agrees with the reference, ranks in [1, C], order-invariant, chunk-invariant."""
    images, classes, labels, perm, chunk = inputs
    c = classes.shape[0]
    ranks, _ = M.classification_ranks(images, classes, labels, chunk_size=chunk)
    assert ranks.tolist() == naive_classification_ranks(images, classes, labels)
    assert all(1 <= r <= c for r in ranks.tolist())
    assert torch.equal(M.classification_ranks(images, classes, labels)[0], ranks)
    permuted, _ = M.classification_ranks(images, classes[torch.tensor(perm)], torch.tensor(_inverse(perm))[labels], chunk_size=chunk)
    assert torch.equal(permuted, ranks)
    metrics = classification_metrics(ranks, labels, c)
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert ("acc5" in metrics) == (c >= 5)
    recalls = [M.recall_at_k(ranks, k) for k in range(1, c + 2)]
    assert recalls == sorted(recalls) and recalls[-1] == 1.0


@HYPOTHESIS
@given(retrieval_inputs())
def test_property_retrieval_ranks(inputs):
    """Any small tie-heavy input with 1..6 captions per image: reference agreement, bounds, order and chunk invariance."""
    images, texts, t2i, chunk, pc, pi = inputs
    image_ranks, text_ranks = M.retrieval_ranks(images, texts, t2i, chunk_size=chunk)
    exp_img, exp_txt = naive_retrieval_ranks(images, texts, t2i)
    assert image_ranks.tolist() == exp_img and text_ranks.tolist() == exp_txt
    n_captions = torch.bincount(t2i, minlength=len(images))
    assert all(1 <= r <= len(t2i) - n_captions[i] + 1 for i, r in enumerate(image_ranks.tolist()))
    assert all(1 <= r <= len(images) for r in text_ranks.tolist())
    unchunked = M.retrieval_ranks(images, texts, t2i)
    assert torch.equal(unchunked[0], image_ranks) and torch.equal(unchunked[1], text_ranks)

    metrics = retrieval_metrics(image_ranks, text_ranks)
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    pc_t = torch.tensor(pc)
    ir, tr = M.retrieval_ranks(images, texts[pc_t], t2i[pc_t], chunk_size=chunk)
    assert torch.equal(ir, image_ranks) and torch.equal(tr, text_ranks[pc_t])
    ir, tr = M.retrieval_ranks(images[torch.tensor(pi)], texts, torch.tensor(_inverse(pi))[t2i], chunk_size=chunk)
    assert torch.equal(ir, image_ranks[torch.tensor(pi)]) and torch.equal(tr, text_ranks)
    assert retrieval_metrics(ir, tr) == metrics


@HYPOTHESIS
@given(st.lists(st.integers(1, 20), min_size=1, max_size=40), st.integers(1, 6))
def test_property_recall_and_per_class_recall(ranks, num_classes):
    """recall@k in [0,1], monotonic in k, equal to the naive count; per-class recall matches, NaN when empty."""
    r = torch.tensor(ranks)
    labels = torch.tensor([x % num_classes for x in range(len(ranks))][::-1])
    values = [M.recall_at_k(r, k) for k in range(0, 22)]
    assert values == [naive_recall(ranks, k) for k in range(0, 22)]
    assert values == sorted(values) and all(0.0 <= v <= 1.0 for v in values)
    assert same_floats(M.per_class_recall(r, labels, num_classes + 1).tolist(), naive_per_class_recall(ranks, labels, num_classes + 1))
    assert 0.0 <= M.mean_per_class_recall(r, labels, num_classes + 1) <= 1.0


@HYPOTHESIS
@given(classification_inputs(), st.data())
def test_property_classification_metrics_match_naive_and_ignore_query_order(inputs, data):
    """The summary metrics themselves (not only the ranks) on any small tie-heavy input: equal to the naive
    computation, in [0, 1], acc1 <= acc5, and unchanged when the images are queried in another order."""
    images, classes, labels, _, chunk = inputs
    c = classes.shape[0]
    ranks, _ = M.classification_ranks(images, classes, labels, chunk_size=chunk)
    naive = naive_classification_ranks(images, classes, labels)
    present = [x for x in naive_per_class_recall(naive, labels, c) if not math.isnan(x)]
    expected = {"acc1": naive_recall(naive, 1), "mean_per_class_recall": sum(present) / len(present)}
    if c >= 5:
        expected["acc5"] = naive_recall(naive, 5)
    got = classification_metrics(ranks, labels, c)
    assert got == pytest.approx(expected, abs=1e-12)
    assert all(0.0 <= v <= 1.0 for v in got.values()) and got["acc1"] <= got.get("acc5", 1.0)
    order = torch.tensor(data.draw(st.permutations(range(len(labels)))), dtype=torch.long)
    shuffled, _ = M.classification_ranks(images[order], classes, labels[order], chunk_size=chunk)
    assert torch.equal(shuffled, ranks[order])
    assert classification_metrics(shuffled, labels[order], c) == pytest.approx(got, abs=1e-12)


@HYPOTHESIS
@given(retrieval_inputs())
def test_property_retrieval_metrics_match_naive_and_grow_with_k(inputs):
    """Recall@{1,5,10} both ways on any small tie-heavy input: the naive fractions, non-decreasing in k, and
    mean_recall@1 the mean of the two R@1."""
    images, texts, t2i, chunk, _, _ = inputs
    got = retrieval_metrics(*M.retrieval_ranks(images, texts, t2i, chunk_size=chunk))
    for way, naive in zip(("image_to_text", "text_to_image"), naive_retrieval_ranks(images, texts, t2i)):
        values = [got[f"{way}_recall@{k}"] for k in (1, 5, 10)]
        assert values == [naive_recall(naive, k) for k in (1, 5, 10)]
        assert values == sorted(values) and all(0.0 <= v <= 1.0 for v in values)
    assert got["mean_recall@1"] == pytest.approx((got["image_to_text_recall@1"] + got["text_to_image_recall@1"]) / 2, abs=1e-12)


# ----------------------------------------------------------------------------- errors


def test_labels_out_of_range_raise_value_error():
    img, cls = torch.eye(3), torch.eye(3)
    for bad in ([0, 1, 3], [0, -1, 2]):
        with pytest.raises(ValueError, match="labels"):
            M.classification_ranks(img, cls, torch.tensor(bad))


def test_labels_of_the_wrong_length_raise_value_error():
    """Guards a silent broadcast: one label for three images used to give ranks for the wrong class."""
    img, cls = torch.eye(3), torch.eye(3)
    for bad in ([2], [0, 1], [0, 1, 2, 0]):
        with pytest.raises(ValueError, match="labels"):
            M.classification_ranks(img, cls, torch.tensor(bad))


def test_image_without_captions_raises_value_error():
    with pytest.raises(ValueError, match="caption"):
        M.retrieval_ranks(torch.eye(3), torch.eye(3)[:2], torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="caption"):
        M.retrieval_ranks(torch.eye(3), torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))


@pytest.mark.parametrize("bad", [[0, 1, 3], [0, 1, -1], [0, 1, 2, 99]])
def test_text_to_image_out_of_range_raises_value_error(bad):
    """Guards negative indices too (they used to reach torch.bincount and raise a RuntimeError)."""
    with pytest.raises(ValueError):
        M.retrieval_ranks(torch.eye(3), torch.ones(len(bad), 3), torch.tensor(bad))


def test_text_to_image_of_the_wrong_length_raises_value_error():
    with pytest.raises(ValueError, match="one entry per caption"):
        M.retrieval_ranks(torch.eye(2), torch.eye(2), torch.tensor([0, 1, 1]))


def test_no_images_raises_value_error():
    """Guards an empty gallery, which used to fail inside torch with a RuntimeError."""
    with pytest.raises(ValueError):
        M.retrieval_ranks(torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))


def test_mismatched_or_non_2d_embeddings_raise_value_error():
    with pytest.raises(ValueError, match="widths"):
        M.classification_ranks(torch.ones(2, 3), torch.ones(4, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="widths"):
        M.retrieval_ranks(torch.ones(2, 3), torch.ones(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="2-D"):
        M.retrieval_ranks(torch.ones(2, 2, 3), torch.ones(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="2-D"):
        M.classification_ranks(torch.ones(3), torch.ones(4, 3), torch.tensor([0]))


def test_recall_of_no_queries_raises_value_error():
    with pytest.raises(ValueError):
        M.recall_at_k(torch.zeros(0, dtype=torch.long), 1)


def test_no_images_gives_empty_classification_ranks():
    """An empty image set is not an error at the rank stage: empty ranks, (0, k) predictions."""
    ranks, preds = M.classification_ranks(torch.zeros(0, 3), torch.eye(3), torch.zeros(0, dtype=torch.long))
    assert ranks.shape == (0,) and preds.shape == (0, 3)


# ----------------------------------------------------------------------------- doctests


def test_module_doctests_pass():
    """The examples in the metric docstrings run and give what they show."""
    result = doctest.testmod(M, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
