"""Dual encoders: the protocols the evaluation drives (`base`), device policy (`device`), the transformers
adapter (`hf`), the custom-object adapter (`custom`), where a checkpoint is (`checkpoints`), loading (`load`),
saving whole (`save`), and Flax-only checkpoints (`flax`).

The names below are imported lazily: `encoders.checkpoints`, which checks a `--model` folder before
anything heavy loads, must not pull in torch by importing this package.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "DualEncoder": "base", "Embedder": "base", "ModelInfo": "base", "weights_fingerprint": "base",
    "ProtocolEncoder": "custom", "HFDualEncoder": "hf",
    "as_dual_encoder": "load", "load_model": "load", "save_pretrained_atomically": "save",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"vtde_bench.encoders.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'vtde_bench.encoders' has no attribute {name!r}")
