"""Caption selection (SugarCrepe): one image, several candidate captions, the first of them the right one.

An item is right when its right caption scores strictly above every other candidate against the image: a tie
counts against the model, as everywhere (SugarCrepe's own `main_eval.py` also asks for `pos_score > neg_score`;
CLIP_benchmark's and MTEB's `argmax` give a tie to the positive). Accuracy is the fraction of items right; the
bootstrap resamples items.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

from vtde_bench.kinds import Kind, Metric, register_kind

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class CaptionSelection(Kind):
    type = "caption_selection"
    title = "caption selection"
    short = "selection"
    needs = "captions"  # each row's candidates, the right one first (HuggingFaceM4's `tested_labels`)
    metrics = (Metric("acc", "acc"),)
    default_main_metric = "acc"
    source_fields = {"caption_column": str, "num_captions": int}  # num_captions: checked on load, as for retrieval
    source_defaults = {"caption_column": "captions"}
    identity = ()
    hub_task = ("other", "Caption Selection")

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
        return Scores(metrics={"acc": hits / len(candidates)}, counts={"acc": (hits, len(candidates))},
                      samples=samples, num_texts=len(texts),
                      timings={"embed_texts_s": texts_done - started, "metrics_s": time.perf_counter() - texts_done})

    def statistic(self, samples: "pd.DataFrame", metrics: tuple[str, ...]) -> tuple[int, Callable]:
        from vtde_bench.bootstrap import in_content_order

        samples = in_content_order(samples, ["key"])
        correct = samples["correct"].to_numpy().astype(float)

        def statistic(idx: "np.ndarray") -> dict[str, "np.ndarray"]:
            return {"acc": correct[idx].mean(1)}

        return len(samples), statistic


KIND = register_kind(CaptionSelection())
