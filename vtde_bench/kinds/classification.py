"""Zero-shot classification: each image is matched against one prompt embedding per class.

For each class every template is filled with the class name, the prompt embeddings are
normalised, averaged over templates and renormalised (CLIP's prompt ensembling). An image's rank
is the rank of its true class among all classes; ties count against the model, but among classes
whose prompts are identical the lowest index wins (`metrics.classification_ranks`).
"""

from __future__ import annotations

import collections
import re
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable

from vtde_bench.kinds import Kind, Metric, register_kind
from vtde_bench.spec import ANY_KEY, SORTED_FOLDERS, TaskSpec

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

    from vtde_bench.spec import Card


# What a card's `[prompts]` may take from its source instead of a file beside it: the source's own text file,
# as a CLIP_benchmark webdataset holds it at its root (DataComp's protocol is those files).
SOURCE = "source"
SOURCE_FILES = {"classnames": "classnames.txt", "templates": "zeroshot_classification_templates.txt"}


# What a card may add beside acc1, acc5 and mean per-class recall: a `[metrics.NAME]` table of one of these types.
WORST_GROUP, MACRO_F1 = "worst_group", "macro_f1"
CARD_METRIC_KEYS = {WORST_GROUP: {"type": str, "by": str, "top": int, "skip": list}, MACRO_F1: {"type": str}}
_METRIC_NAME = re.compile(r"[A-Za-z0-9_@.+-]+")  # a result-file key, and a per-sample column prefix (before ':')


@dataclass(frozen=True)
class CardMetric:
    """A metric a card defines, named as the card names it (DataComp's names: "acc_worst_region", "F1-macro_all").

    - `worst_group`: the hit rate (true class within the top `top`) of each group of images sharing a value of
      the metadata field `by`, the lowest over the groups that have images; values in `skip` are no group.
    - `macro_f1`: F1 of each class present in the labels, averaged (`metrics.macro_f1`).
    """

    name: str
    type: str
    by: str = ""
    top: int = 1
    skip: tuple[int, ...] = ()

    def describe(self) -> str:
        if self.type == MACRO_F1:
            return f"{self.name}: macro-F1"
        skip = f", without {self.by} {', '.join(map(str, self.skip))}" if self.skip else ""
        return f"{self.name}: worst top-{self.top} accuracy over {self.by}{skip}"


@dataclass(frozen=True, kw_only=True)
class ClassificationTask(TaskSpec):
    """A zero-shot classification card: class names in label order, and the prompt templates.

    `from_source` names the lists the card takes from its source's own files (`SOURCE_FILES`); they are
    empty until `ZeroShotClassification.bind` has read them. `match_source`: the source's files, where a
    copy carries them, must equal the card's lists word for word.
    """

    classnames: tuple[str, ...]
    templates: tuple[str, ...]
    num_classes: int
    from_source: tuple[str, ...] = ()
    match_source: bool = False
    card_metrics: tuple[CardMetric, ...] = ()

    @property
    def bound(self) -> bool:
        """Whether the class names and templates are known (read from the card, or bound from the source)."""
        return bool(self.classnames) and bool(self.templates)


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


def card_metric_statistic(samples: "pd.DataFrame", name: str, labels: "np.ndarray") -> Callable[["np.ndarray"], "np.ndarray"]:
    """Per resample, the card metric `name` from its per-sample columns: worst-group hit rate (over the groups
    the resample holds) or macro-F1 (over the classes it holds). NaN where the resample holds no group.

    Raises:
        ValueError: the table has no columns for `name` (a result written before the metric existed).
    """
    import numpy as np

    if f"{name}:assigned" in samples.columns:
        assigned = samples[f"{name}:assigned"].to_numpy()
        size = int(max(labels.max(), assigned.max())) + 1 if labels.size else 1
        correct = (labels == assigned).astype(np.float64)

        def f1(idx: np.ndarray) -> np.ndarray:
            rows = np.repeat(np.arange(idx.shape[0]), idx.shape[1])
            tp, support, predicted = (np.zeros((idx.shape[0], size)) for _ in range(3))
            np.add.at(tp, (rows, labels[idx].ravel()), correct[idx].ravel())
            np.add.at(support, (rows, labels[idx].ravel()), 1.0)
            np.add.at(predicted, (rows, assigned[idx].ravel()), 1.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.nanmean(np.where(support > 0, 2 * tp / (support + predicted), np.nan), axis=1)

        return f1
    if f"{name}:group" in samples.columns:
        groups = samples[f"{name}:group"].to_numpy()
        hits = samples[f"{name}:hit"].to_numpy().astype(np.float64)
        size = int(groups.max()) + 2 if groups.size else 1  # column 0 gathers the images of no group

        def worst(idx: np.ndarray) -> np.ndarray:
            rows = np.repeat(np.arange(idx.shape[0]), idx.shape[1])
            column = groups[idx].ravel() + 1
            h, n = np.zeros((idx.shape[0], size)), np.zeros((idx.shape[0], size))
            np.add.at(h, (rows, column), hits[idx].ravel())
            np.add.at(n, (rows, column), 1.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                rates = np.where(n[:, 1:] > 0, h[:, 1:] / n[:, 1:], np.nan)
            out = np.full(idx.shape[0], np.nan)
            some = ~np.isnan(rates).all(axis=1)
            out[some] = np.nanmin(rates[some], axis=1)
            return out

        return worst
    raise ValueError(f"the per-sample table has no columns for the metric {name!r}")


class ZeroShotClassification(Kind):
    type = "zeroshot_classification"
    title = "zeroshot classification"
    short = "classification"
    needs = "labels"
    metrics = (Metric("acc1", "acc1"), Metric("acc5", "acc5"), Metric("mean_per_class_recall", "mean/class"))
    default_main_metric = "acc1"
    source_fields = {"label_column": str, "class_folders": str}
    source_defaults = {"label_column": "label"}
    tables = {"prompts": {"classnames": str, "templates": str, "class_subset": str, "num_classes": int, "match_source": bool},
              "metrics": {ANY_KEY: dict}}
    required_tables = ("prompts",)
    identity = ("label",)
    clip_benchmark_task = "zeroshot_classification"
    hub_task = ("zero-shot-image-classification", "Zero-Shot Image Classification")

    def source_values(self, card: "Card", src: dict[str, Any]) -> dict[str, Any]:
        values = super().source_values(card, src)
        folders = values.get("class_folders")
        if folders is not None and folders != SORTED_FOLDERS:  # a file of folder names; else torchvision's rule
            values["class_folders"] = card.lines("source.class_folders", folders)
        return values

    def spec(self, card: "Card", common: dict[str, Any], tables: dict[str, dict[str, Any]]) -> ClassificationTask:
        prompts = tables["prompts"]
        lists: dict[str, tuple[str, ...]] = {}
        for name in ("classnames", "templates"):
            value = card.require(prompts, name, "prompts.")
            # Duplicate class names are allowed: CLIP's published ImageNet names hold two ("missile", "sunglasses").
            lists[name] = () if value == SOURCE else card.lines(f"prompts.{name}", value, unique=name == "templates")
        from_source = tuple(name for name in SOURCE_FILES if not lists[name])
        source = common["source"]
        if from_source and source.format != "webdataset":
            raise card.fail(f"prompts.{from_source[0]}", '= "source" reads the file a CLIP_benchmark webdataset holds at its '
                            'root; set source.format = "webdataset", or name a file beside the card')
        subset = prompts.get("class_subset")
        if subset is not None:  # e.g. ImageNet-A's 200 classes: indices into the full lists, ascending
            if not lists["classnames"]:
                raise card.fail("prompts.class_subset", "needs the full class-name file in prompts.classnames")
            indices = self._subset(card, subset, len(lists["classnames"]))
            lists["classnames"] = tuple(lists["classnames"][i] for i in indices)
            folders = source.class_folders
            if isinstance(folders, tuple):
                if len(folders) <= indices[-1]:
                    raise card.fail("source.class_folders", f"lists {len(folders)} folders, too few for class_subset")
                common = {**common, "source": replace(source, class_folders=tuple(folders[i] for i in indices))}
        num_classes = prompts.get("num_classes", len(lists["classnames"]))
        if "classnames" in from_source and "num_classes" not in prompts:
            raise card.fail("prompts.num_classes", 'is missing; a card whose class names come from the source states how many')
        if lists["classnames"] and num_classes != len(lists["classnames"]):
            raise card.fail("prompts.num_classes", f"= {num_classes}, but the class names are {len(lists['classnames'])}")
        for template in lists["templates"]:
            self._check_template(card, template)
        folders = common["source"].class_folders
        if isinstance(folders, tuple) and len(folders) != num_classes:
            raise card.fail("source.class_folders", f"lists {len(folders)} folders for {num_classes} classes")
        return ClassificationTask(**common, classnames=lists["classnames"], templates=lists["templates"], num_classes=num_classes,
                                  from_source=from_source, match_source=prompts.get("match_source", False),
                                  card_metrics=self._card_metrics(card, tables.get("metrics", {}), common["source"], num_classes))

    def _card_metrics(self, card: "Card", table: dict[str, dict], source: Any, num_classes: int) -> tuple[CardMetric, ...]:
        out = []
        builtin = {m.name for m in self.metrics}
        for name, entry in table.items():
            field = f"metrics.{name}"
            if not _METRIC_NAME.fullmatch(name) or name in builtin:
                raise card.fail(field, "must be named with letters, digits and _@.+- only, and not as a built-in metric")
            kind = entry.get("type")
            if kind not in CARD_METRIC_KEYS:
                raise card.fail(f"{field}.type", f"must be one of {', '.join(CARD_METRIC_KEYS)}, got {kind!r}")
            card.check(entry, CARD_METRIC_KEYS[kind], prefix=field + ".")
            if kind == MACRO_F1:
                out.append(CardMetric(name, kind))
                continue
            by = card.require(entry, "by", field + ".")
            if by not in source.metadata_fields:
                raise card.fail(f"{field}.by", f"= {by!r} is not one of source.metadata_fields "
                                f"({', '.join(source.metadata_fields) or 'none'}); name the field the groups are")
            top, skip = entry.get("top", 1), entry.get("skip", [])
            if not 1 <= top <= num_classes:
                raise card.fail(f"{field}.top", f"must be between 1 and the {num_classes} classes, got {top}")
            if not all(isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in skip):
                raise card.fail(f"{field}.skip", f"must list group values (integers, 0 or more), got {skip!r}")
            out.append(CardMetric(name, kind, by, top, tuple(sorted(set(skip)))))
        return tuple(out)

    @staticmethod
    def _subset(card: "Card", relative: str, total: int) -> list[int]:
        lines = card.lines("prompts.class_subset", relative)
        try:
            indices = [int(x) for x in lines]
        except ValueError:
            raise card.fail("prompts.class_subset", f"= {relative!r} must hold one class index per line") from None
        if indices != sorted(set(indices)) or indices[0] < 0 or indices[-1] >= total:
            raise card.fail("prompts.class_subset", f"= {relative!r} must hold distinct ascending indices below {total}")
        return indices

    @staticmethod
    def _check_template(card: "Card", template: str) -> None:
        if "{c}" not in template:
            raise card.fail("prompts.templates", f"template {template!r} has no '{{c}}' placeholder for the class name")

    def bind(self, spec: ClassificationTask, read: Callable[[str], str | None], where: str) -> ClassificationTask:
        """Take the lists the card leaves to its source from the source's own files; with `match_source`, check the
        card's lists against them. Files are read as CLIP_benchmark reads them: one entry per line, each stripped.

        Raises:
            UserError: a file the card needs is missing, holds another number of classes than the card states,
                or (with `match_source`) differs from the card's list.
        """
        from vtde_bench.errors import UserError

        if not spec.from_source and not spec.match_source:
            return spec
        found: dict[str, tuple[str, ...]] = {}
        for name, filename in SOURCE_FILES.items():
            if name not in spec.from_source and not spec.match_source:
                continue
            text = read(filename)
            if text is None:
                if name in spec.from_source:
                    raise UserError(f"task {spec.name}: its card takes {name} from the source's {filename}, which "
                                    f"{where} lacks; use a complete copy of the source")
                continue
            entries = tuple(line.strip() for line in text.splitlines())
            ours = getattr(spec, name)
            if name in spec.from_source:
                found[name] = entries
            elif entries != ours:
                at = next((i for i, (a, b) in enumerate(zip(ours, entries)) if a != b), min(len(ours), len(entries)))
                theirs = repr(entries[at]) if at < len(entries) else "nothing"
                mine = repr(ours[at]) if at < len(ours) else "nothing"
                raise UserError(
                    f"task {spec.name}: the source's {filename} ({len(entries)} entries) differs from the card's "
                    f"{name} ({len(ours)}) at entry {at + 1}: {theirs} there, {mine} in the card; the source's file "
                    "is the published protocol, so the card is wrong: fix its file (or remove match_source)")
        names = found.get("classnames", spec.classnames)
        if len(names) != spec.num_classes:
            raise UserError(f"task {spec.name}: the source's classnames.txt lists {len(names)} classes but the card states "
                            f"{spec.num_classes}; this copy is of another dataset or version")
        for template in found.get("templates", ()):
            if "{c}" not in template:
                raise UserError(f"task {spec.name}: the source's template {template!r} has no '{{c}}' placeholder")
        return replace(spec, **found)

    def metric_names(self, spec: ClassificationTask) -> tuple[str, ...]:
        # acc5 is meaningless (always 1.0) with fewer than five classes.
        builtin = tuple(m.name for m in self.metrics if m.name != "acc5" or spec.num_classes >= 5)
        return builtin + tuple(m.name for m in spec.card_metrics)

    def profile(self, spec: ClassificationTask) -> dict[str, str | None]:
        from vtde_bench.profile import digest

        folders = spec.source.class_folders
        fields = {"classnames": digest(spec.classnames), "templates": digest(spec.templates),
                  "class_folders": folders if isinstance(folders, str) or folders is None else digest(folders)}
        if spec.card_metrics:  # (only then: profiles of cards without them stay as they were)
            fields["card_metrics"] = digest([m.describe() for m in spec.card_metrics] + list(spec.source.metadata_fields))
        return fields

    def score(self, spec: ClassificationTask, model: Any, data: Any, images: Any, context: Any) -> Any:
        import pandas as pd
        import torch

        from vtde_bench import metrics as M
        from vtde_bench.errors import UserError
        from vtde_bench.evaluators import Scores, sample_identity

        assert data.labels is not None and spec.bound, "bind the task to its source first (ZeroShotClassification.bind)"
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
        metrics, counts = scores_from_ranks(ranks, labels, n), counts_from_ranks(ranks, n)
        per_group = {}
        for m in spec.card_metrics:
            if m.type == MACRO_F1:
                assigned = M.assigned_classes(images.embeddings, classes, labels, twins=twins)
                metrics[m.name] = M.macro_f1(labels, assigned)
                samples[f"{m.name}:assigned"] = assigned.numpy()
                continue
            assert data.metadata is not None, "the loader reads source.metadata_fields"
            groups = torch.tensor([data.metadata[m.by][i] for i in images.indices], dtype=torch.long)
            if m.skip:
                groups[torch.isin(groups, torch.tensor(m.skip))] = -1
            hits = ranks <= m.top
            found = M.group_counts(hits, groups)
            if not found:
                raise UserError(f"task {spec.name}: no image belongs to a group of {m.by} that {m.name} counts; "
                                "with --limit, take more rows")
            counts[m.name] = M.worst_group(found)
            metrics[m.name] = counts[m.name][0] / counts[m.name][1]
            per_group[m.name] = {f"{m.by}={g}": {"value": h / k, "images": k} for g, (h, k) in found.items()}
            samples[f"{m.name}:group"] = groups.numpy()
            samples[f"{m.name}:hit"] = hits.numpy()
        return Scores(
            metrics=metrics,
            counts=counts,
            samples=samples,
            num_texts=n * len(spec.templates),
            timings={"embed_texts_s": texts_done - started, "metrics_s": time.perf_counter() - texts_done},
            per_class_recall={name: (None if r != r else r) for name, r in zip(class_keys(spec.classnames), recalls)},
            per_group=per_group or None,
            warnings=warnings,
        )

    def statistic(self, samples: "pd.DataFrame", metrics: tuple[str, ...]) -> tuple[int, Callable]:
        from vtde_bench.bootstrap import in_content_order

        samples = in_content_order(samples, list(self.identity))
        labels = samples["label"].to_numpy()
        base = statistic_of(samples["rank"].to_numpy(), labels, acc5="acc5" in metrics)
        # A card's metrics are resampled from the columns their scoring wrote (`<name>:group`, `<name>:hit`,
        # `<name>:assigned`): the per-sample table alone says how, with or without the card.
        builtin = {m.name for m in self.metrics}
        extra = {name: card_metric_statistic(samples, name, labels) for name in metrics if name not in builtin}

        def statistic(idx: "np.ndarray") -> dict[str, "np.ndarray"]:
            return {**base(idx), **{name: f(idx) for name, f in extra.items()}}

        return len(samples), statistic


KIND = register_kind(ZeroShotClassification())
