"""Visual associations (WinoGAViL): one text, a set of candidate images, a set answer.

Each instance's text becomes one prompt; the model selects as many candidates as the instance has right
answers, those its prompt scores highest against, and the instance scores the Jaccard index of the selection
and the answers (|both| / |either|). Ties at the cut count against the model: among equal scores a wrong
candidate is selected first. The metrics are DataComp's (mlfoundations/datacomp eval_utils/wino_eval.py): the
mean Jaccard index over all instances, over those with 5, 6, 10 or 12 candidates, and over those with at most
6 ("5-6") or at least 10 ("10-12", DataComp's main metric).
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

# Metric name → which instances it averages over, by their number of candidates (DataComp's selections).
SUBSETS: dict[str, Callable[[int], bool]] = {
    "avg_jaccard_score": lambda n: True,
    "jaccard_score_5": lambda n: n == 5,
    "jaccard_score_6": lambda n: n == 6,
    "jaccard_score_10": lambda n: n == 10,
    "jaccard_score_12": lambda n: n == 12,
    "jaccard_score_5-6": lambda n: n <= 6,
    "jaccard_score_10-12": lambda n: n >= 10,
}
VOWELS = "aeiou"


@dataclass(frozen=True, kw_only=True)
class AssociationTask(TaskSpec):
    """An association card: where its instances and images are, and how a text becomes its prompt."""

    instances_file: str  # the table of instances, in the source's root
    images: str  # the images' zip archive in the source's root (or the folder it extracts to, without .zip)
    image_suffix: str  # an image's file name is its candidate name and this
    text_column: str
    candidates_column: str  # a JSON list of image names
    answers_column: str  # a JSON list of the right ones among them
    lowercase: bool = False
    article: bool = False  # "A" or "An" before the text (DataComp: "An" when it starts with a vowel)


def prompt(text: str, *, lowercase: bool, article: bool) -> str:
    """The prompt of an instance's text, as DataComp's `get_clip_prompt` makes it (with both rules on).

    >>> prompt("Pompeii", lowercase=True, article=True), prompt("ash", lowercase=True, article=True)
    ('A pompeii', 'An ash')
    """
    if lowercase:
        text = text.lower()
    if article:
        text = f"{'An' if text[:1] in VOWELS else 'A'} {text}"
    return text


def select(scores: list[float], answers: set[int]) -> list[int]:
    """The positions of the len(answers) highest scores; among equal scores, wrong candidates first.

    >>> select([0.9, 0.5, 0.5, 0.1], {0, 1})  # candidates 1 and 2 tie for the second place: the wrong one wins
    [0, 2]
    """
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i in answers, i))
    return sorted(order[: len(answers)])


def counts_of(selected: list[int], answers: set[int]) -> tuple[int, int]:
    """(|selected ∩ answers|, |selected ∪ answers|): the Jaccard index as a fraction."""
    both = len(answers.intersection(selected))
    return both, len(selected) + len(answers) - both


def means(inter: "np.ndarray", union: "np.ndarray", sizes: "np.ndarray") -> dict[str, float]:
    """Each metric's mean Jaccard index over its instances, exactly; a metric with no instances is left out."""
    from vtde_bench.metrics import exact_mean

    out = {}
    for name, chosen in SUBSETS.items():
        pairs = [(int(i), int(u)) for i, u, n in zip(inter, union, sizes) if chosen(int(n))]
        if pairs:
            out[name] = exact_mean(pairs)
    return out


class Association(Kind):
    type = "association"
    title = "visual associations"
    short = "association"
    needs = "instances"
    metrics = tuple(Metric(name, name.replace("jaccard_score", "jaccard").replace("avg_jaccard", "jaccard")) for name in SUBSETS)
    default_main_metric = "jaccard_score_10-12"
    tables = {"instances": {"file": str, "images": str, "image_suffix": str, "text_column": str, "candidates_column": str,
                            "answers_column": str},
              "prompts": {"lowercase": bool, "article": bool}}
    required_tables = ("instances",)
    identity = ()
    hub_task = ("other", "Visual Associations")

    def spec(self, card: Any, common: dict[str, Any], tables: dict[str, dict[str, Any]]) -> AssociationTask:
        table, prompts = tables["instances"], tables.get("prompts", {})
        fields = {key: card.require(table, key, "instances.") for key in ("file", "images")}
        for key in fields.values():
            if "/" in key or "\\" in key or key.startswith("."):
                raise card.fail("instances", f"names files at the source's root: {key!r} is a path; name the file")
        return AssociationTask(**common, instances_file=fields["file"], images=fields["images"],
                               image_suffix=table.get("image_suffix", ".jpg"), text_column=table.get("text_column", "text"),
                               candidates_column=table.get("candidates_column", "candidates"),
                               answers_column=table.get("answers_column", "answers"),
                               lowercase=prompts.get("lowercase", False), article=prompts.get("article", False))

    def profile(self, spec: AssociationTask) -> dict[str, str | None]:
        return {"prompt": f"lowercase={spec.lowercase} article={spec.article}"}

    def score(self, spec: AssociationTask, model: Any, data: Any, images: Any, context: Any) -> Any:
        import pandas as pd

        from vtde_bench.errors import UserError
        from vtde_bench.evaluators import Scores, embed_distinct_texts

        assert data.instances is not None
        started = time.perf_counter()
        position = {row: p for p, row in enumerate(images.indices)}
        # An instance with a skipped (bad) image cannot be scored: it is left out, and said so.
        kept = [inst for inst in data.instances if all(c in position for c in inst.candidates)]
        if not kept:
            raise UserError(f"task {spec.name}: no instance has all its candidate images")
        prompts = [prompt(inst.text, lowercase=spec.lowercase, article=spec.article) for inst in kept]
        text_emb = embed_distinct_texts(model, prompts, context, "Embedding texts")
        texts_done = time.perf_counter()
        image_emb = images.embeddings.float()
        rows = []
        for inst, text in zip(kept, text_emb.float()):
            scores = (image_emb[[position[c] for c in inst.candidates]] @ text).tolist()
            answers = {k for k, c in enumerate(inst.candidates) if c in inst.answers}
            chosen = select(scores, answers)
            both, either = counts_of(chosen, answers)
            rows.append({"key": inst.key, "text": inst.text, "candidates": len(inst.candidates), "answers": len(answers),
                         "selected": [data.keys[inst.candidates[k]] for k in chosen], "intersection": both, "union": either})
        samples = pd.DataFrame(rows)
        metrics = means(samples["intersection"].to_numpy(), samples["union"].to_numpy(), samples["candidates"].to_numpy())
        absent = [m for m in self.metric_names(spec) if m not in metrics]
        if absent:
            raise UserError(f"task {spec.name}: no instance counts in {absent[0]} (by its number of candidates); "
                            "with --limit, take more rows")
        warnings = []
        if len(kept) < len(data.instances):
            warnings.append(f"{len(data.instances) - len(kept)} instance(s) left out: a candidate image was bad and skipped")
        return Scores(metrics=metrics, samples=samples, num_texts=len(prompts), warnings=warnings,
                      timings={"embed_texts_s": texts_done - started, "metrics_s": time.perf_counter() - texts_done})

    def statistic(self, samples: "pd.DataFrame", metrics: tuple[str, ...]) -> tuple[int, Callable]:
        import numpy as np

        samples = samples.sort_values("key", kind="stable").reset_index(drop=True)  # the same instances, the same draws
        jaccard = samples["intersection"].to_numpy() / samples["union"].to_numpy()
        sizes = samples["candidates"].to_numpy()
        masks = {name: np.array([SUBSETS[name](int(n)) for n in sizes], dtype=np.float64) for name in metrics}

        def statistic(idx: np.ndarray) -> dict[str, np.ndarray]:
            out = {}
            for name, mask in masks.items():
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[name] = (jaccard[idx] * mask[idx]).sum(1) / mask[idx].sum(1)
            return out

        return len(samples), statistic


KIND = register_kind(Association())
