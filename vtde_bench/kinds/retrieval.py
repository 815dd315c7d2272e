"""Image-text retrieval: N images, each with one or more captions, ranked against each other both ways.

Recall@k in CLIP papers means "at least one true caption in the top k": an image query's rank
is that of its best-ranked caption. A caption query has one true image.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

from vtde_bench.kinds import Kind, Metric, register_kind

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

KS = (1, 5, 10)


def counts_from_ranks(image_ranks: "torch.Tensor", text_ranks: "torch.Tensor") -> dict[str, tuple[int, int]]:
    """(hits, queries) behind each recall@k, both ways."""
    from vtde_bench import metrics as M

    counts = {f"image_to_text_recall@{k}": M.hits_at_k(image_ranks, k) for k in KS}
    counts.update({f"text_to_image_recall@{k}": M.hits_at_k(text_ranks, k) for k in KS})
    return counts


def scores_from_ranks(image_ranks: "torch.Tensor", text_ranks: "torch.Tensor") -> dict[str, float]:
    """Recall@{1,5,10} both ways (hits over queries) and their mean R@1 (exact), as fractions."""
    from vtde_bench import metrics as M

    counts = counts_from_ranks(image_ranks, text_ranks)
    scores = {name: hits / n for name, (hits, n) in counts.items()}
    scores["mean_recall@1"] = M.exact_mean([counts["image_to_text_recall@1"], counts["text_to_image_recall@1"]])
    return scores


def statistic_of(image_ranks: "np.ndarray", caption_ranks: list["np.ndarray"]) -> Callable[["np.ndarray"], dict[str, "np.ndarray"]]:
    """Per resample of images: recall@{1,5,10} both ways and mean R@1; `caption_ranks[i]` are image i's captions' ranks."""
    import numpy as np

    n_captions = np.array([len(r) for r in caption_ranks], dtype=np.float64)
    caption_hits = {k: np.array([(r <= k).sum() for r in caption_ranks], dtype=np.float64) for k in KS}

    def statistic(idx: np.ndarray) -> dict[str, np.ndarray]:
        stats = {}
        for k in KS:
            stats[f"image_to_text_recall@{k}"] = (image_ranks[idx] <= k).mean(1)
        for k in KS:
            stats[f"text_to_image_recall@{k}"] = caption_hits[k][idx].sum(1) / n_captions[idx].sum(1)
        stats["mean_recall@1"] = (stats["image_to_text_recall@1"] + stats["text_to_image_recall@1"]) / 2
        return stats

    return statistic


class Retrieval(Kind):
    type = "retrieval"
    title = "retrieval"
    short = "retrieval"
    needs = "captions"
    metrics = (
        *(Metric(f"image_to_text_recall@{k}", f"I→T R@{k}") for k in KS),
        *(Metric(f"text_to_image_recall@{k}", f"T→I R@{k}") for k in KS),
        Metric("mean_recall@1", "mean R@1"),
    )
    default_main_metric = "mean_recall@1"
    source_fields = {"caption_column": str, "num_captions": int}
    source_defaults = {"caption_column": "captions"}
    identity = ("query", "caption_index")
    clip_benchmark_task = "zeroshot_retrieval"
    hub_task = ("other", "Image-Text Retrieval")
    # CLIP_benchmark's image_retrieval_recall@k is text→image (images retrieved), text_retrieval_recall@k image→text.
    clip_benchmark_metrics = {"image_retrieval_recall@": "text_to_image_recall@", "text_retrieval_recall@": "image_to_text_recall@"}

    def import_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        out = super().import_metrics(metrics)
        if "image_to_text_recall@1" in out and "text_to_image_recall@1" in out:
            out["mean_recall@1"] = (out["image_to_text_recall@1"] + out["text_to_image_recall@1"]) / 2
        return out

    def score(self, spec: Any, model: Any, data: Any, images: Any, context: Any) -> Any:
        import pandas as pd
        import torch

        from vtde_bench import metrics as M
        from vtde_bench.errors import UserError
        from vtde_bench.evaluators import Scores, embed_distinct_texts, sample_identity

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
            raise UserError(f"task {spec.name}: no captions to retrieve")
        text_emb = embed_distinct_texts(model, texts, context, "Embedding captions")
        texts_done = time.perf_counter()
        image_ranks, text_ranks = M.retrieval_ranks(images.embeddings, text_emb, torch.tensor(text_to_image))
        keys = [data.keys[i] for i in images.indices]
        caption_rows = [images.indices[p] for p in text_to_image]
        samples = pd.concat(
            [
                pd.DataFrame({"query": "image", "key": keys, **sample_identity(data, images.indices), "caption_index": -1,
                              "rank": image_ranks.numpy()}),
                pd.DataFrame(
                    {
                        "query": "text",
                        "key": [keys[p] for p in text_to_image],
                        **sample_identity(data, caption_rows),
                        "caption_index": caption_index,
                        "rank": text_ranks.numpy(),
                    }
                ),
            ],
            ignore_index=True,
        )
        return Scores(
            metrics=scores_from_ranks(image_ranks, text_ranks),
            counts=counts_from_ranks(image_ranks, text_ranks),
            samples=samples,
            num_texts=len(texts),
            timings={"embed_texts_s": texts_done - started, "metrics_s": time.perf_counter() - texts_done},
        )

    def statistic(self, samples: "pd.DataFrame", metrics: tuple[str, ...]) -> tuple[int, Callable]:
        from vtde_bench.bootstrap import image_unit, in_content_order

        unit = image_unit(samples)
        images = in_content_order(samples[samples["query"] == "image"], [unit])
        captions = samples[samples["query"] == "text"]
        by_unit = {u: group["rank"].to_numpy() for u, group in captions.groupby(unit, sort=False)}
        caption_ranks = [by_unit[u] for u in images[unit]]
        return len(images), statistic_of(images["rank"].to_numpy(), caption_ranks)


KIND = register_kind(Retrieval())
