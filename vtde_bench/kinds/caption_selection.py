"""Caption selection (SugarCrepe, ARO): one image, several candidate captions, the first of them the right one.

An item is right when its right caption scores strictly above every other candidate against the image: a tie
counts against the model, as everywhere (SugarCrepe's own `main_eval.py` also asks for `pos_score > neg_score`;
CLIP_benchmark's, MTEB's and ARO's `argmax` give a tie to the first candidate). Accuracy `acc` is the fraction of
items right, over all items (the micro mean MTEB reports for ARO). The bootstrap resamples items.

A card whose source names a `group_column` (ARO's relation, or attribute pair) also gets `acc_macro`: the accuracy of
each group, averaged over the groups, as the ARO paper reports VG-Relation and VG-Attribution. Its `[groups]` table
may leave groups out of that mean: `skip` names them (ARO's symmetric relations), `min_items` drops the smaller ones
(ARO keeps attribute pairs with at least 25 items). `acc` still counts every item.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from vtde_bench.kinds import Kind, Metric, register_kind
from vtde_bench.spec import TaskSpec

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from vtde_bench.spec import Card

MACRO = "acc_macro"


@dataclass(frozen=True, kw_only=True)
class CaptionSelectionTask(TaskSpec):
    """A caption-selection card: the groups its macro mean leaves out (by name, and below a size)."""

    skip_groups: tuple[str, ...] = ()
    min_group_items: int = 1


class CaptionSelection(Kind):
    type = "caption_selection"
    title = "caption selection"
    short = "selection"
    # Each row's candidates, the right one first: one column holding the list (HuggingFaceM4's `tested_labels`),
    # or a column each (`caption_columns`: ARO's true_caption, false_caption).
    needs = "captions"
    metrics = (Metric("acc", "acc"), Metric(MACRO, "macro acc"))
    default_main_metric = "acc"
    source_fields = {"caption_column": str, "caption_columns": list, "num_captions": int, "crop_column": str,
                     "group_column": str}
    source_defaults = {"caption_column": "captions"}
    tables = {"groups": {"skip": list, "min_items": int}}
    identity = ()
    hub_task = ("other", "Caption Selection")

    def spec(self, card: "Card", common: dict[str, Any], tables: dict[str, dict[str, Any]]) -> TaskSpec:
        groups = tables.get("groups", {})
        if groups and common["source"].group_column is None:
            raise card.fail("groups", "needs source.group_column, the column naming each item's group")
        skip = groups.get("skip", [])
        if not all(isinstance(g, str) and g for g in skip) or len(set(skip)) != len(skip):
            raise card.fail("groups.skip", f"must list distinct group names, got {skip!r}")
        min_items = groups.get("min_items", 1)
        if min_items < 1:
            raise card.fail("groups.min_items", f"must be at least 1, got {min_items}")
        return CaptionSelectionTask(**common, skip_groups=tuple(sorted(skip)), min_group_items=min_items)

    def metric_names(self, spec: TaskSpec) -> tuple[str, ...]:
        return ("acc", MACRO) if spec.source.group_column else ("acc",)

    def profile(self, spec: TaskSpec) -> dict[str, str | None]:
        from vtde_bench.profile import digest

        if not spec.source.group_column:
            return {}
        return {"skip_groups": digest(spec.skip_groups), "min_group_items": str(spec.min_group_items)}

    def score(self, spec: Any, model: Any, data: Any, images: Any, context: Any) -> Any:
        import pandas as pd
        import torch

        from vtde_bench.errors import UserError
        from vtde_bench.evaluators import Scores, embed_distinct_texts, sample_identity

        assert data.captions is not None
        started = time.perf_counter()
        candidates = [data.captions[row] for row in images.indices]
        short = next((data.keys[row] for row, c in zip(images.indices, candidates) if len(c) < 2), None)
        if short is not None:
            raise UserError(f"task {spec.name}: item {short!r} has fewer than two candidate captions; each needs its right "
                            "caption first and at least one other")
        texts = [text for item in candidates for text in item]
        text_emb = embed_distinct_texts(model, texts, context, "Embedding captions")
        texts_done = time.perf_counter()
        right, best_wrong, at = [], [], 0
        image_emb = images.embeddings.float()
        for i, item in enumerate(candidates):
            scores = text_emb[at : at + len(item)].float() @ image_emb[i]
            at += len(item)
            right.append(scores[0].item())
            best_wrong.append(scores[1:].max().item())
        correct = torch.tensor(right) > torch.tensor(best_wrong)  # a tie counts against the model
        samples = pd.DataFrame({"key": [data.keys[r] for r in images.indices], **sample_identity(data, images.indices),
                                "candidates": [len(c) for c in candidates], "right_score": right,
                                "best_wrong_score": best_wrong, "correct": correct.numpy()})
        hits = int(correct.sum())
        metrics, counts = {"acc": hits / len(candidates)}, {"acc": (hits, len(candidates))}
        warnings, details, per_group = [], {}, None
        same = sum(item[0] in item[1:] for item in candidates)
        if same:
            details["items_with_a_negative_equal_to_the_caption"] = same
            warnings.append(f"{same} of {len(candidates)} items have a negative caption identical to the right one: a tie, "
                            "counted wrong here (an argmax over the candidates, as ARO's and MTEB's code take, would "
                            "count them right)")
        if spec.source.group_column:
            samples["group"] = [data.groups[r] for r in images.indices]
            counted = counted_groups(samples["group"], spec)
            if not counted:
                raise UserError(f"task {spec.name}: no group has the {spec.min_group_items} items its macro mean needs "
                                "(or every group is skipped); with --limit, take more rows")
            samples["group_counted"] = samples["group"].isin(counted)
            by_group = samples[samples["group_counted"]].groupby("group")["correct"].agg(["sum", "count"])
            metrics[MACRO] = float((by_group["sum"] / by_group["count"]).mean())
            per_group = {MACRO: {f"{spec.source.group_column}={g}": {"value": int(h) / int(n), "images": int(n)}
                                 for g, (h, n) in by_group.iterrows()}}
            details["groups_counted"] = len(counted)
            details["groups_left_out"] = int(samples["group"].nunique()) - len(counted)
        return Scores(metrics=metrics, counts=counts, samples=samples, num_texts=len(texts), per_group=per_group,
                      details=details or None, warnings=warnings,
                      timings={"embed_texts_s": texts_done - started, "metrics_s": time.perf_counter() - texts_done})

    def statistic(self, samples: "pd.DataFrame", metrics: tuple[str, ...]) -> tuple[int, Callable]:
        import numpy as np

        from vtde_bench.bootstrap import in_content_order

        samples = in_content_order(samples, ["key"])
        correct = samples["correct"].to_numpy().astype(float)
        groups = None
        if MACRO in metrics:
            # Each counted group's index; -1 for an item of a group the macro mean leaves out.
            names = sorted(set(samples.loc[samples["group_counted"], "group"]))
            index = {g: i for i, g in enumerate(names)}
            groups = np.array([index.get(g, -1) if c else -1 for g, c in zip(samples["group"], samples["group_counted"])])

        def statistic(idx: "np.ndarray") -> dict[str, "np.ndarray"]:
            stats = {"acc": correct[idx].mean(1)}
            if groups is not None:
                stats[MACRO] = macro_means(groups[idx], correct[idx], int(groups.max()) + 1)
            return stats

        return len(samples), statistic


def counted_groups(groups: "pd.Series", spec: Any) -> set[str]:
    """The groups a macro mean averages: not skipped by the card, and with at least its `min_items` items."""
    sizes = groups.value_counts()
    return {g for g, n in sizes.items() if g not in spec.skip_groups and n >= spec.min_group_items}


def macro_means(groups: "np.ndarray", correct: "np.ndarray", n_groups: int) -> "np.ndarray":
    """Per resample (rows of the (B, n) arrays): the mean over groups of each group's accuracy, over the groups the
    resample holds items of (index -1: an item of no counted group)."""
    import numpy as np

    offsets = np.arange(len(groups))[:, None] * n_groups
    keep = groups >= 0
    flat = (groups + offsets)[keep]
    items = np.bincount(flat, minlength=len(groups) * n_groups).reshape(len(groups), n_groups)
    hits = np.bincount(flat, weights=correct[keep], minlength=len(groups) * n_groups).reshape(len(groups), n_groups)
    with np.errstate(invalid="ignore"):
        return np.nanmean(np.where(items > 0, hits / np.maximum(items, 1), np.nan), axis=1)


KIND = register_kind(CaptionSelection())
