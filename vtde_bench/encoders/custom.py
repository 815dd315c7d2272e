"""Any object with `encode_images` / `encode_texts` as a dual encoder the embedding loop can drive."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from vtde_bench import imaging
from vtde_bench.encoders.base import ModelInfo, weights_fingerprint
from vtde_bench.errors import RunFailure, UserError


class ProtocolEncoder:
    """Wraps any object with `encode_images` / `encode_texts` so the embedding loop can drive it.

    Preprocessing is the identity (the object gets PIL images and strings); its
    outputs are checked, cast to float32 and L2-normalised here.
    """

    def __init__(self, encoder: Any):
        self.encoder = encoder
        self.device = torch.device("cpu")
        self.precision = "fp32"
        self.info = ModelInfo(path=getattr(encoder, "name", type(encoder).__name__), model_type="custom")
        state = encoder.state_dict() if callable(getattr(encoder, "state_dict", None)) else None
        # Without weights or a `fingerprint` of its own, nothing tells two instances apart: None, so
        # that neither results nor cached embeddings of one are ever reused for another.
        self.info.weights_fingerprint = weights_fingerprint(state) if state else getattr(encoder, "fingerprint", None)
        self.info.embedding_dim = self._probe_width()

    def _probe_width(self) -> int:
        image_width = self.embed_image_inputs({"images": [Image.new("RGB", (32, 32), (127, 127, 127))]}).shape[1]
        text_width = self.embed_text_inputs({"texts": ["a photo."]}).shape[1]
        if image_width != text_width:
            raise UserError(f"{self.info.path}: image embeddings have width {image_width} but text embeddings {text_width}")
        return image_width

    def preprocessing_fingerprint(self, kind: str) -> None:
        return None  # the object's own code turns images and texts into embeddings

    def cache_key(self, kind: str) -> dict[str, Any] | None:
        # Only an object that names its own fingerprint can be cached: its weights alone do not
        # pin what its own code does with them.
        fingerprint = getattr(self.encoder, "fingerprint", None)
        return {"weights": fingerprint, "precision": self.precision} if fingerprint else None

    def decode(self, data: bytes) -> Image.Image:
        return imaging.decode_image(data)

    def image_inputs(self, images: list[Image.Image]) -> dict[str, Any]:
        return {"images": images}

    def text_inputs(self, texts: list[str]) -> dict[str, Any]:
        return {"texts": texts}

    def _check(self, emb: Any, n: int) -> Tensor:
        emb = torch.as_tensor(emb).float().cpu()
        if emb.ndim != 2 or emb.shape[0] != n:
            raise RunFailure(f"{self.info.path} returned embeddings of shape {tuple(emb.shape)} for {n} inputs; expected ({n}, D)")
        if not torch.isfinite(emb).all():
            raise RunFailure(f"{self.info.path} produced NaN or inf embeddings")
        return F.normalize(emb, dim=-1)

    def embed_image_inputs(self, inputs: dict[str, Any]) -> Tensor:
        return self._check(self.encoder.encode_images(inputs["images"]), len(inputs["images"]))

    def embed_text_inputs(self, inputs: dict[str, Any]) -> Tensor:
        return self._check(self.encoder.encode_texts(inputs["texts"]), len(inputs["texts"]))
