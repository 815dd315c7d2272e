"""Linear probes: how good the image features are on their own, by CLIP's protocol (`vtde_bench.probe`).

The card's source is the test split; its `[probe]` table names the train split (and a validation split, or
how many train images to hold out for validation, drawn with the card's seed). The train (and validation)
images are embedded through the same cache, resume and torchrun machinery as the test images. Features are
the normalised projected image embeddings, or (`--probe-features pre-projection`, transformers checkpoints)
the vision tower's pooled output, which the CLIP paper used for its ViTs.

- Full probe: λ by CLIP's search (fit on train less validation, scored on validation), then the head refitted
  on train and validation together; test acc1, acc5 and mean per-class recall, and the chosen λ.
- Few-shot (`shots`): for each k, `draws` seeded draws of k train images per class (never validation images);
  λ by the same search on validation; the head fitted on the k-shot images only; `acc1_<k>shot` is the mean over
  draws, and the result's details hold every draw's accuracy and λ.

Intervals resample test images with the fitted heads held fixed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable

from vtde_bench.kinds import Kind, Metric, register_kind
from vtde_bench.spec import TaskSpec

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

SHOTS = (1, 2, 4, 8, 16)
FEATURES = ("projected", "pre-projection")


class PooledImages:
    """A model seen through its vision tower's pooled output, before the projection (`--probe-features
    pre-projection`): what the embedding loop drives, with its own cache key."""

    def __init__(self, model: Any):
        from vtde_bench.errors import UserError

        if not callable(getattr(model, "embed_pooled_image_inputs", None)):
            raise UserError(f"--probe-features pre-projection needs a transformers checkpoint; {model.info.path} gives "
                            "projected embeddings only")
        self.model, self.device, self.precision, self.info = model, model.device, model.precision, model.info
        self.decode, self.image_inputs = model.decode, model.image_inputs

    def cache_key(self, kind: str) -> dict[str, Any] | None:
        key = self.model.cache_key(kind)
        return None if key is None else {**key, "features": "pre-projection"}

    def preprocessing_fingerprint(self, kind: str) -> str | None:
        return self.model.preprocessing_fingerprint(kind)

    def embed_image_inputs(self, inputs: dict[str, Any]) -> Any:
        return self.model.embed_pooled_image_inputs(inputs)


@dataclass(frozen=True, kw_only=True)
class ProbeTask(TaskSpec):
    """A linear-probe card: the classes (label order), the train split, validation, and the few-shot settings."""

    classnames: tuple[str, ...]
    train_split: str
    train_samples: int
    validation_split: str | None = None
    validation_samples: int = 0  # held out of train (when no validation split), drawn with `seed`
    seed: int = 0
    shots: tuple[int, ...] = ()  # empty: the full probe
    draws: int = 5
    features: str = "projected"  # or "pre-projection": the vision tower's pooled output

    @property
    def num_classes(self) -> int:
        return len(self.classnames)


def split_rows(n: int, held_out: int, seed: int) -> tuple[list[int], list[int]]:
    """(fit rows, validation rows): a seeded permutation of range(n), the first `held_out` for validation."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(n).tolist()
    return sorted(order[held_out:]), sorted(order[:held_out])


def draw_shots(labels: list[int], pool: list[int], k: int, num_classes: int, seed: int | tuple[int, ...],
               classnames: tuple[str, ...]) -> list[int]:
    """k rows of each class from `pool` (rows of `labels`), seeded (a draw's seed: the card's, k and the draw).

    Raises:
        UserError: a class has fewer than k rows in the pool (naming it).
    """
    import numpy as np

    from vtde_bench.errors import UserError

    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {c: [] for c in range(num_classes)}
    for row in pool:
        by_class[labels[row]].append(row)
    chosen = []
    for c, rows in by_class.items():
        if len(rows) < k:
            raise UserError(f"class {classnames[c]!r} has {len(rows)} training image(s) outside validation, fewer than "
                            f"the {k} a {k}-shot draw needs; use fewer shots or a larger train split")
        chosen += sorted(rng.choice(rows, size=k, replace=False).tolist())
    return chosen


class LinearProbe(Kind):
    type = "linear_probe"
    title = "linear probe"
    short = "probe"
    needs = "labels"
    metrics = (Metric("acc1", "acc1"), Metric("acc5", "acc5"), Metric("mean_per_class_recall", "mean/class"),
               *(Metric(f"acc1_{k}shot", f"{k}-shot") for k in SHOTS))
    default_main_metric = "acc1"
    source_fields = {"label_column": str}
    source_defaults = {"label_column": "label"}
    tables = {"probe": {"classnames": str, "train_split": str, "train_samples": int, "validation_split": str,
                        "validation_samples": int, "seed": int, "shots": list, "draws": int}}
    required_tables = ("probe",)
    identity = ("label",)
    hub_task = ("image-classification", "Image Classification (linear probe)")

    def spec(self, card: Any, common: dict[str, Any], tables: dict[str, dict[str, Any]]) -> ProbeTask:
        probe = tables["probe"]
        classnames = card.lines("probe.classnames", card.require(probe, "classnames", "probe."), unique=False)
        train_samples = card.require(probe, "train_samples", "probe.")
        validation_split, validation = probe.get("validation_split"), card.require(probe, "validation_samples", "probe.")
        if validation_split is None and not 0 < validation < train_samples:
            raise card.fail("probe.validation_samples", f"must be between 1 and the {train_samples} train images it is held "
                            "out of (or name a validation_split of that size)")
        if validation < 1:
            raise card.fail("probe.validation_samples", "must be at least 1")
        shots = probe.get("shots", [])
        if not all(k in SHOTS for k in shots) or len(set(shots)) != len(shots):
            raise card.fail("probe.shots", f"must list distinct numbers of images per class among {list(SHOTS)}")
        draws = probe.get("draws", 5)
        if draws < 1:
            raise card.fail("probe.draws", "must be at least 1")
        if shots:
            common = {**common, "main_metric": f"acc1_{max(shots)}shot"}
        return ProbeTask(**common, classnames=classnames, train_split=card.require(probe, "train_split", "probe."),
                         train_samples=train_samples, validation_split=validation_split, validation_samples=validation,
                         seed=probe.get("seed", 0), shots=tuple(sorted(shots)), draws=draws)

    def splits(self, spec: ProbeTask) -> tuple[str, ...]:
        return tuple(s for s in (spec.source.split, spec.train_split, spec.validation_split) if s is not None)

    def configure(self, spec: ProbeTask, options: Any) -> ProbeTask:
        """--shots and --probe-seeds override the card's few-shot settings."""
        shots, draws = getattr(options, "shots", None), getattr(options, "probe_seeds", None)
        features = getattr(options, "probe_features", None)
        if features is not None:
            spec = replace(spec, features=features)
        if shots is not None:
            spec = replace(spec, shots=tuple(sorted(shots)), main_metric=f"acc1_{max(shots)}shot")
        return spec if draws is None else replace(spec, draws=draws)

    def image_embedder(self, spec: ProbeTask, model: Any) -> Any:
        """Every split's images, the test split's too, embedded once through what the features are."""
        return PooledImages(model) if spec.features == "pre-projection" else model

    def metric_names(self, spec: ProbeTask) -> tuple[str, ...]:
        if spec.shots:
            return tuple(f"acc1_{k}shot" for k in spec.shots)
        return ("acc1", "acc5", "mean_per_class_recall") if spec.num_classes >= 5 else ("acc1", "mean_per_class_recall")

    def profile(self, spec: ProbeTask) -> dict[str, str | None]:
        from vtde_bench.profile import digest

        return {"classnames": digest(spec.classnames),
                "probe": f"train={spec.train_split}:{spec.train_samples} validation={spec.validation_split or spec.validation_samples} "
                         f"seed={spec.seed} shots={list(spec.shots)} draws={spec.draws} features={spec.features} search=clip"}

    # ------------------------------------------------------------------ scoring

    def _features(self, spec: ProbeTask, split: str, size: int, model: Any, context: Any) -> tuple["torch.Tensor", list[int]]:
        """(features, labels) of another split of the task's source, embedded as the test split is."""
        from vtde_bench.data import load_task_data
        from vtde_bench.evaluators import task_images

        other = replace(spec, source=replace(spec.source, split=split, num_samples=size))
        options = context.options
        data = load_task_data(other, data_dir=options.data_dir, limit=options.limit, progress=context.progress,
                              cache=context.cache)
        images = task_images(self.image_embedder(spec, model), data, context)
        return images.embeddings, [data.labels[i] for i in images.indices]

    def score(self, spec: ProbeTask, model: Any, data: Any, images: Any, context: Any) -> Any:
        import pandas as pd
        import torch

        from vtde_bench import metrics as M
        from vtde_bench import probe
        from vtde_bench.evaluators import Scores, sample_identity
        from vtde_bench.kinds.classification import class_keys, counts_from_ranks, scores_from_ranks

        started = time.perf_counter()
        train_x, train_y = self._features(spec, spec.train_split, spec.train_samples, model, context)
        if spec.validation_split is not None:  # the source's own validation split; every train image fits
            val_x, val_y = self._features(spec, spec.validation_split, spec.validation_samples, model, context)
            fit_rows, val_rows = list(range(len(train_y))), list(range(len(train_y), len(train_y) + len(val_y)))
            features, labels = torch.cat([train_x, val_x]), torch.tensor(train_y + val_y)
        else:  # held out of train, seeded; with --limit, in proportion
            held_out = max(1, round(len(train_y) * spec.validation_samples / spec.train_samples))
            fit_rows, val_rows = split_rows(len(train_y), held_out, spec.seed)
            features, labels = train_x, torch.tensor(train_y)
        embedded = time.perf_counter()
        all_labels = labels.tolist()
        validation = (features[val_rows], labels[val_rows])
        test_x, test_y = images.embeddings, torch.tensor([data.labels[i] for i in images.indices])
        n = spec.num_classes
        samples = pd.DataFrame({"key": [data.keys[i] for i in images.indices], **sample_identity(data, images.indices),
                                "label": test_y.numpy()})
        details: dict[str, Any] = {"fit_images": len(fit_rows), "validation_images": len(val_rows), "features": spec.features,
                                   "search": "CLIP's parametric binary search over 1e-6..1e6, 8 steps per decade"}
        per_class = None
        if not spec.shots:
            found = probe.search((features[fit_rows], labels[fit_rows]), validation, n)
            head = probe.fit(features, labels, n, found.strength)  # refitted on train and validation together
            logits = head.logits(test_x)
            ranks = probe.ranks(logits, test_y)
            samples["rank"], samples["prediction"] = ranks.numpy(), logits.argmax(1).numpy()
            metrics = scores_from_ranks(ranks, test_y, n)
            counts = counts_from_ranks(ranks, n)
            recalls = M.per_class_recall(ranks, test_y, n).tolist()
            per_class = {name: (None if r != r else r) for name, r in zip(class_keys(spec.classnames), recalls)}
            details.update(strength=found.strength, validation_accuracy={f"1e{e:g}": a for e, a in sorted(found.tried.items())})
        else:
            metrics, counts, few = {}, {}, {}
            for k in spec.shots:
                hits = torch.zeros(len(test_y), dtype=torch.long)
                draws = []
                for d in range(spec.draws):
                    rows = draw_shots(all_labels, fit_rows, k, n, seed=(spec.seed, k, d), classnames=spec.classnames)
                    found = probe.search((features[rows], labels[rows]), validation, n)
                    head = probe.fit(features[rows], labels[rows], n, found.strength)  # the k-shot images only
                    correct = probe.ranks(head.logits(test_x), test_y) == 1
                    hits += correct.long()
                    draws.append({"acc1": correct.double().mean().item(), "strength": found.strength})
                name = f"acc1_{k}shot"
                counts[name] = (int(hits.sum()), spec.draws * len(test_y))  # the mean over draws, exactly
                metrics[name] = counts[name][0] / counts[name][1]
                samples[name] = (hits.double() / spec.draws).numpy()  # each image's share of draws right
                values = [d["acc1"] for d in draws]
                mean = sum(values) / len(values)
                few[f"{k}shot"] = {"draws": draws, "std": (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5}
            details["few_shot"] = few
        return Scores(metrics=metrics, counts=counts, samples=samples, num_texts=0, per_class_recall=per_class,
                      details=details, timings={"embed_texts_s": 0.0, "embed_train_s": embedded - started,
                                                "metrics_s": time.perf_counter() - embedded})

    def statistic(self, samples: "pd.DataFrame", metrics: tuple[str, ...]) -> tuple[int, Callable]:
        from vtde_bench.bootstrap import in_content_order
        from vtde_bench.kinds.classification import statistic_of

        samples = in_content_order(samples, list(self.identity))
        if "rank" in samples.columns:  # the full probe: the test images' ranks under the fitted head
            return len(samples), statistic_of(samples["rank"].to_numpy(), samples["label"].to_numpy(), acc5="acc5" in metrics)
        shares = {name: samples[name].to_numpy() for name in metrics}  # few-shot: each image's share of draws right

        def statistic(idx: "np.ndarray") -> dict[str, "np.ndarray"]:
            return {name: share[idx].mean(1) for name, share in shares.items()}

        return len(samples), statistic


KIND = register_kind(LinearProbe())
