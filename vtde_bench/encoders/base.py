"""What every model adapter is: the protocols the evaluation drives, and the provenance a result records."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from PIL import Image
from torch import Tensor


@runtime_checkable
class DualEncoder(Protocol):
    """What the evaluators need: images and texts to L2-normalised float32 embeddings of one width."""

    def encode_images(self, images: list[Image.Image]) -> Tensor: ...

    def encode_texts(self, texts: list[str]) -> Tensor: ...


class Embedder(Protocol):
    """What the embedding loop drives: CPU preprocessing (may run in workers), then the model.

    `HFDualEncoder` and `ProtocolEncoder` implement it.
    """

    device: torch.device
    precision: str
    info: "ModelInfo"

    def cache_key(self, kind: str) -> dict[str, Any] | None: ...

    def preprocessing_fingerprint(self, kind: str) -> str | None:
        """sha256 of what turns inputs of `kind` into model inputs (None when the model's own code does it)."""

    def decode(self, data: bytes) -> Any:
        """Image bytes → one item of what `image_inputs` takes (runs in the input workers)."""

    def image_inputs(self, images: list[Any]) -> dict[str, Any]: ...

    def text_inputs(self, texts: list[str]) -> dict[str, Any]: ...

    def embed_image_inputs(self, inputs: dict[str, Any]) -> Tensor: ...

    def embed_text_inputs(self, inputs: dict[str, Any]) -> Tensor: ...


@dataclass
class ModelInfo:
    """Provenance of a loaded model, recorded in every result."""

    path: str
    revision: str | None = None
    resolved_commit: str | None = None
    weights_fingerprint: str | None = None
    num_parameters: int | None = None
    embedding_dim: int | None = None
    model_type: str | None = None
    is_local: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        """Folder name for results: `org__name` for a hub id (`hf-hub_org__name` for open_clip's, `ViT-B-32__tag` for an
        open_clip architecture's tag), `<folder>-<fingerprint[:8]>` for a local folder."""
        if not self.is_local:
            return self.path.replace("/", "__").replace(":", "_")
        name = Path(self.path).resolve().name or "model"
        return f"{name}-{(self.weights_fingerprint or 'unknown')[:8]}"


def weights_fingerprint(state_dict: dict[str, Tensor]) -> str:
    """sha256 over the sorted (name, dtype, shape, bytes) of every tensor of a state dict."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
