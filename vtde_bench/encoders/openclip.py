"""The open_clip adapter: models loaded through open_clip itself (`pip install "vtde-bench[open_clip]"`).

`--model` names an open_clip model (`checkpoints.wants_open_clip`) in one of three ways:
- `local-dir:PATH`, or a plain folder holding `open_clip_config.json` (`model_cfg`, `preprocess_cfg`) and no
  `config.json`: the weights are the file open_clip looks for there;
- `hf-hub:org/repo`: the same layout on the hub, downloaded at `--revision` (open_clip's own `hf-hub:` loader
  takes no revision) and loaded as a local folder;
- an open_clip architecture with `--pretrained TAG_OR_FILE` (`ViT-B-32 --pretrained laion2b_s34b_b79k`).

Images go through open_clip's own transform (after `imaging.open_image`, which only scales 16-bit images to 8
bits), texts through open_clip's own tokenizer: the embeddings are those of `model.encode_image(preprocess(im))`
and `model.encode_text(tokenizer(texts))`, computed here in batches, on the run's device and precision.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from vtde_bench import imaging
from vtde_bench.encoders.base import ModelInfo, weights_fingerprint
from vtde_bench.encoders.checkpoints import HF_HUB, LOCAL_DIR, OPEN_CLIP_CONFIG as CONFIG
from vtde_bench.encoders.device import resolve_device, resolve_precision
from vtde_bench.encoders.text import normalizer, rule_for
from vtde_bench.errors import RunFailure, UserError

# The weight files open_clip's local-dir loader looks for (`factory._find_checkpoint_in_dir`), best first.
WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin",
                "open_clip_pytorch_model.pth", "model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth")
INSTALL = 'pip install "vtde-bench[open_clip]"'


def _open_clip() -> Any:
    try:
        import open_clip
    except ImportError:
        raise UserError(f"open_clip models need the open_clip extra: {INSTALL}") from None
    return open_clip


def check_local_dir(folder: Path, shown: str) -> Path:
    """A folder open_clip can load as `local-dir:`: its config with `model_cfg`, and a weights file.

    Raises:
        UserError: what the folder lacks (open_clip itself would build a randomly initialised model from a config
            without weights, with only a log line).
    """
    if not folder.is_dir():
        raise UserError(f"--model {shown}: no such folder; give a folder holding {CONFIG} and the weights")
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--model {shown} has no {CONFIG}; an open_clip folder holds it (model_cfg, preprocess_cfg) "
                        "beside the weights") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"--model {shown}: {CONFIG} is not valid JSON ({e})") from None
    if not isinstance(config, dict) or "model_cfg" not in config:
        raise UserError(f"--model {shown}: {CONFIG} has no model_cfg; without it the architecture and preprocessing are "
                        "unknown (save the model with open_clip's push_to_hf_hub / save layout)")
    if not any((folder / name).is_file() for name in WEIGHT_NAMES):
        raise UserError(f"--model {shown} has no weights file ({', '.join(WEIGHT_NAMES[:2])}, ...); the model would be "
                        "randomly initialised: add the checkpoint")
    return folder


def load_open_clip(model: str, *, pretrained: str | None = None, revision: str | None = None, device: str = "auto",
                   precision: str = "auto", text_normalize: str | None = None) -> "OpenClipEncoder":
    """Load an open_clip model named as `wants_open_clip` accepts.

    Raises:
        UserError: open_clip is not installed, the folder or architecture is unknown, the weights are missing or
            do not fit, or --revision is given where it cannot apply.
    """
    open_clip = _open_clip()
    resolved = None
    if pretrained is not None and model.startswith((LOCAL_DIR, HF_HUB)):
        raise UserError(f"--pretrained names the weights of an architecture; {model} holds its own (drop --pretrained)")
    if model.startswith(HF_HUB):
        repo = model[len(HF_HUB):]
        folder, resolved = _download(repo, revision)
        name, is_local = LOCAL_DIR + str(check_local_dir(folder, model)), False
    elif model.startswith(LOCAL_DIR) or pretrained is None:
        if revision is not None:
            raise UserError("--revision applies to hub models only; a local folder has no revisions")
        folder = Path(model[len(LOCAL_DIR):] if model.startswith(LOCAL_DIR) else model).expanduser()
        name, is_local = LOCAL_DIR + str(check_local_dir(folder, model)), True
    else:
        if model not in open_clip.list_models():
            raise UserError(f"--model {model} with --pretrained: {model!r} is not an open_clip architecture "
                            f"(open_clip.list_models() has e.g. ViT-B-32, ViT-L-14); check the name")
        name, is_local = model, Path(pretrained).expanduser().is_file()
    try:
        net, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained if name == model else None,
                                                                   device="cpu", require_pretrained=True)
        tokenizer = open_clip.get_tokenizer(name)
    except (RuntimeError, ValueError, OSError, KeyError) as e:
        raise UserError(f"--model {model}: open_clip could not load it ({str(e).strip().splitlines()[0]}); check the "
                        "weights, the tag (open_clip.list_pretrained()) or the network") from None
    if is_local:
        path = str(Path(name[len(LOCAL_DIR):] if name.startswith(LOCAL_DIR) else pretrained).resolve())
    else:  # results of an architecture's tags (and of a repo loaded by open_clip) must not share a folder
        path = model if pretrained is None else f"{model}/{pretrained}"
    info = ModelInfo(path=path, revision=revision, resolved_commit=resolved, is_local=is_local,
                     extra={"loader": "open_clip", "open_clip_model": model, "pretrained": pretrained})
    return OpenClipEncoder(net, preprocess, tokenizer, info=info, device=device, precision=precision,
                           text_normalize=text_normalize)


def _download(repo: str, revision: str | None) -> tuple[Path, str | None]:
    """The repo's files at `revision`, as a local folder (the hub cache's snapshot), and the commit it holds."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    from vtde_bench import hub

    hub.check_reachable(f"--model {HF_HUB}{repo}", "check your network, or give a local-dir: folder")
    try:
        folder = Path(snapshot_download(repo, revision=revision))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as e:
        raise UserError(f"--model {HF_HUB}{repo}: cannot download it ({str(e).splitlines()[0]}); check the id and "
                        "--revision") from None
    return folder, folder.name if len(folder.name) == 40 else None  # the cache names snapshots by commit


class OpenClipEncoder:
    """An open_clip model with its own transform and tokenizer, driven by the embedding loop.

    `decode` and `image_inputs` run on the CPU (in workers); `embed_*` on the model's device.
    """

    def __init__(self, model: Any, preprocess: Any, tokenizer: Any, *, info: ModelInfo, device: str = "auto",
                 precision: str = "auto", text_normalize: str | None = None):
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.model = model.to(self.device).eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.info = info
        self.text_rule = rule_for(None, text_normalize)  # open_clip's tokenizers clean text their own way already
        self._normalize = normalizer(self.text_rule)
        self._preprocessing: dict[str, str] = {}
        self.info.model_type = f"open_clip:{type(model).__name__}"
        self.info.extra["image_preprocessing"] = "open_clip transform"
        self.info.num_parameters = sum(p.numel() for p in model.parameters())
        self.info.weights_fingerprint = weights_fingerprint(model.state_dict())
        self.info.embedding_dim = self._probe_width()

    def _probe_width(self) -> int:
        image_width = self.embed_image_inputs(self.image_inputs([Image.new("RGB", (32, 32), (127, 127, 127))])).shape[1]
        text_width = self.embed_text_inputs(self.text_inputs(["a photo."])).shape[1]
        if image_width != text_width:
            raise UserError(f"{self.info.path}: image embeddings have width {image_width} but text embeddings {text_width}")
        return image_width

    def describe(self, kind: str) -> dict[str, Any]:
        """What turns inputs of `kind` into model inputs, readably (for the profile)."""
        if kind == "images":
            config = getattr(getattr(self.model, "visual", None), "preprocess_cfg", None) or {}
            return {"path": "open_clip transform", **{k: v for k, v in config.items()},
                    "decode": "open_clip's (convert('RGB') after the resize)", "decoder": "cpu"}
        clean = getattr(self.tokenizer, "clean_fn", None)
        return {"tokenizer": type(self.tokenizer).__name__, "context_length": getattr(self.tokenizer, "context_length", None),
                "tokenizer_clean": getattr(clean, "__name__", None), "padding": "max_length", "truncation": True,
                "text_rule": self.text_rule}

    def preprocessing_fingerprint(self, kind: str) -> str:
        """sha256 of the transform (its repr names every step and value) or of the tokenizer and the text rule."""
        if kind not in self._preprocessing:
            if kind == "images":
                text = repr(self.preprocess)
            else:
                text = json.dumps(self.describe("texts"), sort_keys=True) + "|" + _vocabulary(self.tokenizer)
            self._preprocessing[kind] = hashlib.sha256(text.encode()).hexdigest()
        return self._preprocessing[kind]

    def cache_key(self, kind: str) -> dict[str, Any]:
        return {"weights": self.info.weights_fingerprint, "preprocessing": self.preprocessing_fingerprint(kind),
                "precision": self.precision, "device": self.device.type, "loader": "open_clip"}

    # -------------------------------------------------------------- preprocessing (CPU, picklable)

    def decode(self, data: bytes) -> Image.Image:
        return imaging.open_image(data)

    def image_inputs(self, images: list[Image.Image]) -> dict[str, Tensor]:
        return {"pixel_values": torch.stack([self.preprocess(image) for image in images])}

    def text_inputs(self, texts: list[str]) -> dict[str, Tensor]:
        if self._normalize is not None:
            texts = [self._normalize(t) for t in texts]
        return {"input_ids": self.tokenizer(texts)}

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Each text's token ids as the model sees them (padded to the context length)."""
        return self.text_inputs(texts)["input_ids"].tolist()

    # -------------------------------------------------------------- model (device)

    def _forward(self, fn: Any, x: Tensor) -> Tensor:
        autocast = self.precision in ("bf16", "fp16")
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=dtype, enabled=autocast):
            emb = fn(x.to(self.device, non_blocking=True))
        emb = emb.float()
        if not torch.isfinite(emb).all():
            raise RunFailure(f"the model produced NaN or inf embeddings in {self.precision}; rerun with --precision fp32")
        return F.normalize(emb, dim=-1).cpu()

    def embed_image_inputs(self, inputs: dict[str, Tensor]) -> Tensor:
        return self._forward(self.model.encode_image, inputs["pixel_values"])

    def embed_text_inputs(self, inputs: dict[str, Tensor]) -> Tensor:
        return self._forward(self.model.encode_text, inputs["input_ids"])

    def encode_images(self, images: list[Image.Image]) -> Tensor:
        return self.embed_image_inputs(self.image_inputs(images))

    def encode_texts(self, texts: list[str]) -> Tensor:
        return self.embed_text_inputs(self.text_inputs(texts))


def _vocabulary(tokenizer: Any) -> str:
    """A digest of what decides a tokenizer's ids: the BPE vocabulary and merges, or the HF tokenizer's JSON."""
    inner = getattr(tokenizer, "tokenizer", None)  # open_clip's HFTokenizer wraps a transformers tokenizer
    backend = getattr(inner, "backend_tokenizer", None)
    if backend is not None:
        return hashlib.sha256(backend.to_str().encode()).hexdigest()
    encoder = getattr(tokenizer, "encoder", None)
    ranks = getattr(tokenizer, "bpe_ranks", None)
    parts = [json.dumps(sorted(encoder.items())) if isinstance(encoder, dict) else "",
             json.dumps(sorted((" ".join(k), v) for k, v in ranks.items())) if isinstance(ranks, dict) else ""]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()
