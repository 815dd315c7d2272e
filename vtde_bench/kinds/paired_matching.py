"""Paired matching (Winoground): each item holds k images and k captions, caption i describing image i, and the
captions use the same words in another order.

With s(c, i) the similarity of caption c and image i, an item scores, as in the Winoground paper (Thrush et al. 2022):

- text: for every image, its own caption above every other caption of the item (s(c0,i0) > s(c1,i0) and
  s(c1,i1) > s(c0,i1) for k = 2);
- image: for every caption, its own image above every other image of the item;
- group: both.

Comparisons are strict, so a tie counts against the model, as the paper's `>` does. The scores are fractions of items;
the bootstrap resamples items. An item with an image that could not be decoded (--skip-bad-images) is left out.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

from vtde_bench.kinds import Kind, Metric, register_kind

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

SCORES = ("text_score", "image_score", "group_score")


class PairedMatching(Kind):
    type = "paired_matching"
    title = "paired matching"
    short = "matching"
    needs = "captions"  # each row (one image of an item) has its own caption; `data.items` groups the rows
    metrics = (Metric("text_score", "text"), Metric("image_score", "image"), Metric("group_score", "group"))
    default_main_metric = "group_score"
    source_fields = {"image_columns": list, "caption_columns": list}
    identity = ()
    hub_task = ("other", "Image-Text Matching")

    def score(self, spec: Any, model: Any, data: Any, images: Any, context: Any) -> Any:
        import pandas as pd
        import torch

        from vtde_bench.errors import UserError
        from vtde_bench.evaluators import Scores, embed_distinct_texts, sample_identity

        assert data.items is not None and data.captions is not None, "the loader pairs the rows (source.image_columns)"
        started = time.perf_counter()
        position = {row: i for i, row in enumerate(images.indices)}
        items = [(key, rows) for key, rows in data.items if all(r in position for r in rows)]
        if not items:
            raise UserError(f"task {spec.name}: no item has all its images decoded")
        texts = [data.captions[r][0] for _, rows in items for r in rows]
        text_emb = embed_distinct_texts(model, texts, context, "Embedding captions").float()
        texts_done = time.perf_counter()
        image_emb = images.embeddings.float()
        results, matrices, at = [], [], 0
        for _, rows in items:
            k = len(rows)
            # sims[c, i]: caption c against image i
            sims = text_emb[at : at + k] @ image_emb[torch.tensor([position[r] for r in rows])].T
            at += k
            results.append(item_scores(sims))
            matrices.append(sims.flatten().tolist())
        text_ok, image_ok = (torch.tensor([r[j] for r in results]) for j in (0, 1))
        group_ok = text_ok & image_ok
        first = [rows[0] for _, rows in items]
        samples = pd.DataFrame({"key": [key for key, _ in items], **sample_identity(data, first),
                                "similarities": matrices, "text_correct": text_ok.numpy(),
                                "image_correct": image_ok.numpy(), "group_correct": group_ok.numpy()})
        counts = {name: (int(ok.sum()), len(items)) for name, ok in zip(SCORES, (text_ok, image_ok, group_ok))}
        warnings = []
        if len(items) < len(data.items):
            warnings.append(f"{len(data.items) - len(items)} items are left out: an image of theirs could not be decoded")
        return Scores(metrics={name: h / n for name, (h, n) in counts.items()}, counts=counts, samples=samples,
                      num_texts=len(texts), warnings=warnings,
                      timings={"embed_texts_s": texts_done - started, "metrics_s": time.perf_counter() - texts_done})

    def statistic(self, samples: "pd.DataFrame", metrics: tuple[str, ...]) -> tuple[int, Callable]:
        from vtde_bench.bootstrap import in_content_order

        samples = in_content_order(samples, ["key"])
        columns = {name: samples[name.replace("_score", "_correct")].to_numpy().astype(float) for name in SCORES}

        def statistic(idx: "np.ndarray") -> dict[str, "np.ndarray"]:
            return {name: values[idx].mean(1) for name, values in columns.items()}

        return len(samples), statistic


def item_scores(sims: Any) -> tuple[bool, bool]:
    """(text, image) correctness of one item from its (k, k) similarities, sims[c, i] for caption c and image i:
    text, every image's own caption strictly above the item's other captions; image, every caption's own image
    strictly above the item's other images."""
    import torch

    k = sims.shape[0]
    own = sims.diagonal()
    others = sims.masked_fill(torch.eye(k, dtype=torch.bool), float("-inf"))
    text = bool((own > others.max(dim=0).values).all())  # per image (column): its caption against the others
    image = bool((own > others.max(dim=1).values).all())  # per caption (row): its image against the others
    return text, image


KIND = register_kind(PairedMatching())
