"""A run's profile: everything besides the weights and the data that changes its numbers.

A result on disk is reused only for the same weights fingerprint, the same dataset content
fingerprint and the same profile fingerprint; the result file holds the profile, so two results
can be told apart by what made them differ. What is left out on purpose: where the data lies
and in which layout (the content fingerprint covers the rows), the device, batch size and worker
count (they move only the last bits of an embedding), and timings.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

# The library's own protocol: bumped whenever a change of code moves numbers, so that no result
# computed before it is reused. 2: preprocessing equal to the processor on every image size,
# transparency on white, twin classes, blank captions kept.
PROTOCOL = 2


def digest(items: Sequence[str] | None) -> str | None:
    """sha256 of a list of texts (class names, templates, folder names), None for none."""
    if items is None:
        return None
    return hashlib.sha256(json.dumps(list(items), ensure_ascii=False).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Profile:
    """What a result's numbers depend on besides weights and data. Lists are kept as sha256 digests."""

    task_type: str
    task_version: int
    main_metric: str
    split: str
    config: str | None
    image_column: str
    label_column: str | None
    caption_column: str | None
    kind_fields: dict[str, str | None]  # what the task's kind adds (class names, templates: digests), flat in `to_dict`
    limit: int | None
    precision: str
    bootstrap: int
    bootstrap_seed: int
    skip_bad_images: bool
    image_preprocessing: str | None  # digest of the image processor's configuration (None: the model's own code)
    text_preprocessing: str | None  # digest of the tokenizer, its padding rule and length
    protocol: int = PROTOCOL
    # The same preprocessing, readably (image size, resize, crop, mean/std, the path that computed the pixels;
    # tokenizer, context length, padding, truncation, text rule). Not in the fingerprint: the digests are.
    images: dict[str, Any] | None = field(default=None, compare=False)
    texts: dict[str, Any] | None = field(default=None, compare=False)

    def _fields(self) -> dict[str, Any]:
        fields = asdict(self)
        fields.pop("images"), fields.pop("texts")
        return {**fields.pop("kind_fields"), **fields}

    def to_dict(self) -> dict[str, Any]:
        described = {k: v for k, v in (("images", self.images), ("texts", self.texts)) if v is not None}
        return {**self._fields(), **described, "fingerprint": self.fingerprint}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Profile | None":
        """The profile a result file holds (None when it is not one this version can read: never reused)."""
        names = {f.name for f in fields(cls)} - {"kind_fields"}
        common = {k: v for k, v in data.items() if k in names}
        kind = {k: v for k, v in data.items() if k not in names and k != "fingerprint"}
        try:
            return cls(**common, kind_fields=kind)
        except TypeError:
            return None

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self._fields(), sort_keys=True).encode("utf-8")).hexdigest()


def run_profile(task: Any, model: Any, *, limit: int | None, bootstrap: int, bootstrap_seed: int,
                skip_bad_images: bool) -> Profile:
    """The profile of running `model` (an `Embedder`) on `task` (a `TaskSpec`) with these options."""
    src = task.source
    return Profile(
        task_type=task.type,
        task_version=task.version,
        main_metric=task.main_metric,
        split=src.split,
        config=src.config,
        image_column=src.image_column,
        label_column=src.label_column,
        caption_column=src.caption_column,
        kind_fields=task.kind.profile(task),
        limit=limit,
        precision=model.precision,
        bootstrap=bootstrap,
        bootstrap_seed=bootstrap_seed,
        skip_bad_images=skip_bad_images,
        image_preprocessing=model.preprocessing_fingerprint("images"),
        text_preprocessing=model.preprocessing_fingerprint("texts"),
        images=_described(model, "images"),
        texts=_described(model, "texts"),
    )


def _described(model: Any, kind: str) -> dict[str, Any] | None:
    describe = getattr(model, "describe", None)
    return describe(kind) if callable(describe) else None
