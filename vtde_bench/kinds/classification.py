"""Zero-shot classification: each image is matched against one prompt embedding per class.

For each class every template is filled with the class name, the prompt embeddings are
normalised, averaged over templates and renormalised (CLIP's prompt ensembling). An image's rank
is the rank of its true class among all classes; ties count against the model, but among classes
whose prompts are identical the lowest index wins (`metrics.classification_ranks`).
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from vtde_bench.kinds import Kind, Metric, register_kind
from vtde_bench.spec import SORTED_FOLDERS, TaskSpec

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

    from vtde_bench.spec import Card


@dataclass(frozen=True, kw_only=True)
class ClassificationTask(TaskSpec):
    """A zero-shot classification card: class names in label order, and the prompt templates."""

    classnames: tuple[str, ...]
    templates: tuple[str, ...]


def class_prompts(classnames: tuple[str, ...], templates: tuple[str, ...]) -> list[str]:
    """Every template filled with every class name, class-major. `{c}` is replaced literally (never
    `str.format`, which would choke on other braces)."""
    return [template.replace("{c}", name) for name in classnames for template in templates]


def class_embeddings(model: Any, classnames: tuple[str, ...], templates: tuple[str, ...], context: Any) -> "torch.Tensor":
    """(C, D) class embeddings: the mean over templates of normalised prompt embeddings, renormalised."""
    import torch

    from vtde_bench.evaluators import embed_distinct_texts

    emb = embed_distinct_texts(model, class_prompts(classnames, templates), context, "Embedding class prompts")
    emb = emb.view(len(classnames), len(templates), -1).mean(dim=1)
    return torch.nn.functional.normalize(emb, dim=-1)


def first_twins(classnames: tuple[str, ...], templates: tuple[str, ...]) -> "torch.Tensor":
    """(C,) int64: for each class, the lowest index of a class with the same prompts (itself for most).

    CLIP's ImageNet names hold two 'sunglasses' (836, 837) and two 'missile' (657, 744): such classes
    get identical embeddings, and the lowest index wins their tie (`metrics.classification_ranks`).
    """
    import torch

    prompts = class_prompts(classnames, templates)
    first: dict[tuple[str, ...], int] = {}
    per_class = [tuple(prompts[i * len(templates) : (i + 1) * len(templates)]) for i in range(len(classnames))]
    return torch.tensor([first.setdefault(p, i) for i, p in enumerate(per_class)], dtype=torch.long)


def indistinct_classes(model: Any, classnames: tuple[str, ...], templates: tuple[str, ...]) -> list[list[str]]:
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


def class_keys(classnames: tuple[str, ...]) -> list[str]:
    """One distinct key per class: its name, or `name (index)` for a name several classes share.

    CLIP's ImageNet names repeat two ('missile', 'sunglasses'); keyed by name alone, those
    classes' recalls would overwrite each other.
    """
    seen = collections.Counter(classnames)
    return [f"{name} ({i})" if seen[name] > 1 else name for i, name in enumerate(classnames)]


def counts_from_ranks(ranks: "torch.Tensor", num_classes: int) -> dict[str, tuple[int, int]]:
    """(hits, images) behind acc1 and acc5 (with five or more classes)."""
    from vtde_bench import metrics as M

    return {"acc1": M.hits_at_k(ranks, 1), **({"acc5": M.hits_at_k(ranks, 5)} if num_classes >= 5 else {})}


def scores_from_ranks(ranks: "torch.Tensor", labels: "torch.Tensor", num_classes: int) -> dict[str, float]:
    """acc1, acc5 (with five or more classes) and mean per-class recall, as fractions: hits over images,
    and the exact mean of the classes' recalls."""
    from vtde_bench import metrics as M

    scores = {name: hits / n for name, (hits, n) in counts_from_ranks(ranks, num_classes).items()}
    scores["mean_per_class_recall"] = M.mean_per_class_recall(ranks, labels, num_classes)
    return scores


def statistic_of(ranks: "np.ndarray", labels: "np.ndarray", *, acc5: bool = True) -> Callable[["np.ndarray"], dict[str, "np.ndarray"]]:
    """Per resample: acc1, acc5 (when asked) and mean per-class recall (over classes present in the resample)."""
    import numpy as np

    if labels.size and labels.min() < 0:
        raise ValueError("labels must be class indices, 0 or more")
    # Arrays sized by the largest label: classes with no images count nowhere, so more would change nothing.
    num_classes = int(labels.max()) + 1 if labels.size else 1
    top1 = (ranks <= 1).astype(np.float64)
    top5 = (ranks <= 5).astype(np.float64)

    def statistic(idx: np.ndarray) -> dict[str, np.ndarray]:
        stats = {"acc1": top1[idx].mean(1)}
        if acc5:
            stats["acc5"] = top5[idx].mean(1)
        rows = np.repeat(np.arange(idx.shape[0]), idx.shape[1])
        cls = labels[idx].ravel()
        hits = np.zeros((idx.shape[0], num_classes))
        counts = np.zeros((idx.shape[0], num_classes))
        np.add.at(hits, (rows, cls), top1[idx].ravel())
        np.add.at(counts, (rows, cls), 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            stats["mean_per_class_recall"] = np.nanmean(np.where(counts > 0, hits / counts, np.nan), axis=1)
        return stats

    return statistic


class ZeroShotClassification(Kind):
    type = "zeroshot_classification"
    title = "zeroshot classification"
    short = "classification"
    needs = "labels"
    metrics = (Metric("acc1", "acc1"), Metric("acc5", "acc5"), Metric("mean_per_class_recall", "mean/class"))
    default_main_metric = "acc1"
    source_fields = {"label_column": str, "class_folders": str}
    source_defaults = {"label_column": "label"}
    tables = {"prompts": {"classnames": str, "templates": str}}
    required_tables = ("prompts",)
    identity = ("label",)
    clip_benchmark_task = "zeroshot_classification"

    def source_values(self, card: "Card", src: dict[str, Any]) -> dict[str, Any]:
        values = super().source_values(card, src)
        folders = values.get("class_folders")
        if folders is not None and folders != SORTED_FOLDERS:  # a file of folder names; else torchvision's rule
            values["class_folders"] = card.lines("source.class_folders", folders)
        return values

    def spec(self, card: "Card", common: dict[str, Any], tables: dict[str, dict[str, Any]]) -> ClassificationTask:
        prompts = tables["prompts"]
        # Duplicates are allowed: CLIP's published ImageNet names hold two ("missile", "sunglasses").
        classnames = card.lines("prompts.classnames", card.require(prompts, "classnames", "prompts."), unique=False)
        templates = card.lines("prompts.templates", card.require(prompts, "templates", "prompts."))
        for template in templates:
            if "{c}" not in template:
                raise card.fail("prompts.templates", f"template {template!r} has no '{{c}}' placeholder for the class name")
        folders = common["source"].class_folders
        if isinstance(folders, tuple) and len(folders) != len(classnames):
            raise card.fail("source.class_folders", f"lists {len(folders)} folders for {len(classnames)} classes")
        return ClassificationTask(**common, classnames=classnames, templates=templates)

    def metric_names(self, spec: ClassificationTask) -> tuple[str, ...]:
        # acc5 is meaningless (always 1.0) with fewer than five classes.
        return tuple(m.name for m in self.metrics if m.name != "acc5" or len(spec.classnames) >= 5)

    def profile(self, spec: ClassificationTask) -> dict[str, str | None]:
        from vtde_bench.profile import digest

        folders = spec.source.class_folders
        return {"classnames": digest(spec.classnames), "templates": digest(spec.templates),
                "class_folders": folders if isinstance(folders, str) or folders is None else digest(folders)}

    def score(self, spec: ClassificationTask, model: Any, data: Any, images: Any, context: Any) -> Any:
        import pandas as pd
        import torch

        from vtde_bench import metrics as M
        from vtde_bench.evaluators import Scores, sample_identity

        assert data.labels is not None
        started = time.perf_counter()
        warnings = []
        alike = indistinct_classes(model, spec.classnames, spec.templates)
        if alike:
            names = sum(len(g) for g in alike)
            example = ", ".join(repr(n) for n in alike[0][:3])
            warnings.append(
                f"{names} classes in {len(alike)} group(s) tokenize identically (e.g. {example}): the tokenizer's vocabulary "
                "lacks these words, so the model cannot tell them apart; check the tokenizer or the class names"
            )
        classes = class_embeddings(model, spec.classnames, spec.templates, context)
        texts_done = time.perf_counter()
        labels = torch.tensor([data.labels[i] for i in images.indices], dtype=torch.long)
        twins = first_twins(spec.classnames, spec.templates)
        ranks, predictions = M.classification_ranks(images.embeddings, classes, labels, twins=twins)
        n = len(spec.classnames)
        recalls = M.per_class_recall(ranks, labels, n).tolist()
        samples = pd.DataFrame(
            {
                "key": [data.keys[i] for i in images.indices],
                **sample_identity(data, images.indices),
                "label": labels.numpy(),
                "rank": ranks.numpy(),
                "top5": [row for row in predictions.tolist()],
            }
        )
        return Scores(
            metrics=scores_from_ranks(ranks, labels, n),
            counts=counts_from_ranks(ranks, n),
            samples=samples,
            num_texts=n * len(spec.templates),
            timings={"embed_texts_s": texts_done - started, "metrics_s": time.perf_counter() - texts_done},
            per_class_recall={name: (None if r != r else r) for name, r in zip(class_keys(spec.classnames), recalls)},
            warnings=warnings,
        )

    def statistic(self, samples: "pd.DataFrame", metrics: tuple[str, ...]) -> tuple[int, Callable]:
        from vtde_bench.bootstrap import in_content_order

        samples = in_content_order(samples, list(self.identity))
        return len(samples), statistic_of(samples["rank"].to_numpy(), samples["label"].to_numpy(), acc5="acc5" in metrics)


KIND = register_kind(ZeroShotClassification())
