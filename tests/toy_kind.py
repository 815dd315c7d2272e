"""A third kind of evaluation, defined outside the package: the proof that a kind is one object.

"caption_pick": for each image, does its best-scoring caption (among all captions) belong to it?
`hit_rate` is the fraction of images for which it does; `miss_rate` (lower is better) the rest.
The tests register it with `register_kind` in process, and through the `vtde_bench.kinds`
entry-point group for a CLI subprocess.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from vtde_bench.bootstrap import image_unit, in_content_order
from vtde_bench.evaluators import Scores, embed_distinct_texts, sample_identity
from vtde_bench.kinds import Kind, Metric


class CaptionPick(Kind):
    type = "caption_pick"
    title = "caption pick (toy)"
    short = "toy"
    needs = "captions"
    metrics = (Metric("hit_rate", "hit"), Metric("miss_rate", "miss", higher_is_better=False))
    default_main_metric = "hit_rate"
    source_fields = {"caption_column": str}
    source_defaults = {"caption_column": "captions"}

    def score(self, spec, model, data, images, context):
        started = time.perf_counter()
        texts, owner = [], []
        for position, row in enumerate(images.indices):
            texts += data.captions[row]
            owner += [position] * len(data.captions[row])
        text_emb = embed_distinct_texts(model, texts, context, "Embedding captions")
        best = (images.embeddings @ text_emb.T).argmax(dim=1)
        hits = (torch.tensor(owner)[best] == torch.arange(len(images.indices))).numpy().astype(np.int64)
        samples = pd.DataFrame({"key": [data.keys[i] for i in images.indices], **sample_identity(data, images.indices), "hit": hits})
        rate = int(hits.sum()) / len(hits)
        return Scores(metrics={"hit_rate": rate, "miss_rate": 1 - rate}, samples=samples, num_texts=len(texts),
                      timings={"embed_texts_s": time.perf_counter() - started, "metrics_s": 0.0})

    def statistic(self, samples, metrics):
        samples = in_content_order(samples, [image_unit(samples)])
        hits = samples["hit"].to_numpy().astype(np.float64)

        def statistic(idx):
            rate = hits[idx].mean(1)
            return {"hit_rate": rate, "miss_rate": 1 - rate}

        return len(samples), statistic


KIND = CaptionPick()
