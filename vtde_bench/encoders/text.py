"""Text rules applied before a model's tokenizer: what each family's reference implementation does to a text.

SigLIP and SigLIP2 were trained and are evaluated in big_vision on canonicalised text, and open_clip's
tokenizers for them clean text the same way (`clean="canonicalize"`); transformers' SigLIP processors do not,
so an HF checkpoint gets the rule here. Chosen with `--text-normalize`, recorded in the profile.
"""

from __future__ import annotations

import string
from typing import Callable

RULES = ("none", "lower", "canonical")
FAMILY_RULES = {"siglip": "canonical", "siglip2": "canonical"}  # transformers model_type → its reference's rule
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def canonical(text: str) -> str:
    """big_vision's canonical text: '_' as a space, ASCII punctuation removed, lower-cased, whitespace collapsed.

    >>> canonical("A photo of a Dog_house,   at night!")
    'a photo of a dog house at night'
    """
    return " ".join(text.replace("_", " ").translate(_PUNCTUATION).lower().split())


def rule_for(model_type: str | None, asked: str | None) -> str:
    """The rule a model's texts get: the one asked for, else its family's own ("none" for most)."""
    if asked is not None:
        if asked not in RULES:
            raise ValueError(f"text rule must be one of {', '.join(RULES)}, got {asked!r}")
        return asked
    return FAMILY_RULES.get(model_type or "", "none")


def normalizer(rule: str) -> Callable[[str], str] | None:
    """The function of a rule; None for "none"."""
    return {"none": None, "lower": str.lower, "canonical": canonical}[rule]
