"""Loading a dual encoder: a `save_pretrained` folder, a Flax-only folder, a hub id (or the hub cache when the
hub cannot be reached), or an object handed to the API; and saving one whole or not at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vtde_bench.encoders.base import DualEncoder, ModelInfo
from vtde_bench.encoders.checkpoints import hub_model_from_cache, local_model_folder, wants_open_clip
from vtde_bench.encoders.custom import ProtocolEncoder
from vtde_bench.encoders.hf import HFDualEncoder, check_dual_encoder
from vtde_bench.encoders.openclip import OpenClipEncoder, load_open_clip
from vtde_bench.errors import UserError


def as_dual_encoder(model: Any, *, processor: Any = None, device: str = "auto", precision: str = "auto") -> Any:
    """Turn what a user hands the API into something the embedding loop can drive.

    Accepts a loaded adapter, a transformers model (with `processor`, or one saved
    beside it at `model.name_or_path`), an open_clip model (with `processor=(preprocess, tokenizer)`),
    or any object with `encode_images` / `encode_texts`.
    """
    if isinstance(model, (HFDualEncoder, ProtocolEncoder, OpenClipEncoder)):
        return model
    if callable(getattr(model, "encode_image", None)) and callable(getattr(model, "encode_text", None)):
        # An open_clip model object (CLIP, CustomTextCLIP, CoCa): its transform and tokenizer come beside it.
        if not (isinstance(processor, (tuple, list)) and len(processor) == 2 and all(map(callable, processor))):
            raise UserError(f"pass processor=(preprocess, tokenizer) for this {type(model).__name__}: open_clip's eval "
                            "transform and tokenizer (open_clip.create_model_and_transforms, open_clip.get_tokenizer)")
        return OpenClipEncoder(model, processor[0], processor[1], info=ModelInfo(path=type(model).__name__,
                               extra={"loader": "open_clip"}), device=device, precision=precision)
    if callable(getattr(model, "get_image_features", None)):
        if processor is None:
            from transformers import AutoProcessor

            try:
                processor = AutoProcessor.from_pretrained(model.name_or_path)
            except (OSError, ValueError, TypeError) as e:
                raise UserError(f"pass processor= for this {type(model).__name__}: none could be loaded ({_first_line(e)})") from None
        info = ModelInfo(path=str(getattr(model, "name_or_path", "") or type(model).__name__))
        return HFDualEncoder(model, processor, info=info, device=device, precision=precision)
    if isinstance(model, DualEncoder):
        return ProtocolEncoder(model)
    raise UserError(
        f"cannot evaluate a {type(model).__name__}: give a checkpoint path, a transformers dual encoder "
        "with its processor, or an object with encode_images and encode_texts"
    )


def load_model(
    path: str | Path,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    device: str = "auto",
    precision: str = "auto",
    pretrained: str | None = None,
    text_normalize: str | None = None,
    cache: Any = None,
    decode: str = "auto",
) -> Any:
    """Load a dual encoder and its processor from a `save_pretrained` folder or a hub id, or an open_clip model
    (`checkpoints.wants_open_clip`: `local-dir:`, `hf-hub:`, an architecture with `pretrained`, an open_clip folder).

    `decode` says where JPEGs are decoded (`options.DECODERS`; transformers checkpoints only, see
    `HFDualEncoder`). `cache` (an `EmbeddingCache`) keeps a transformers checkpoint's weights fingerprint under the identity of its
    files (`weights_key`), so a rerun does not hash every weight again (0.5 s for ViT-B/32 on two cores).

    Raises:
        UserError: the path is missing or not a folder, has no config.json, is not a
            dual encoder, or its weights do not load.
    """
    path = str(path)
    if wants_open_clip(path, pretrained):
        if decode == "gpu":
            raise UserError("--decode gpu applies to transformers checkpoints; open_clip's own transforms decode on the "
                            "CPU (use --decode cpu or auto)")
        return load_open_clip(path, pretrained=pretrained, revision=revision, device=device, precision=precision,
                              text_normalize=text_normalize)
    from transformers import AutoConfig, AutoModel, AutoProcessor

    folder = local_model_folder(path, revision)
    local = folder is not None
    if folder is not None:
        path = str(folder)
        # ---- Flax-only folders: transformers 5 cannot load them, so vtde_bench.flax converts in memory.
        from vtde_bench.encoders import flax as flax_checkpoint

        if flax_checkpoint.is_flax_only(folder):
            model = flax_checkpoint.load_flax_model(folder)
            processor = flax_checkpoint.load_flax_processor(folder)
            info = ModelInfo(path=path, is_local=True, extra={"weights_format": "flax"})
            return HFDualEncoder(model, processor, info=info, device=device, precision=precision,
                                 text_normalize=text_normalize, decode=decode)
        # ---- end of the Flax branch
    hub_args: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
    if not local and hub_model_from_cache(path, revision):
        hub_args["local_files_only"] = True  # the hub cannot be reached: no minute of retries before the cache
    try:
        config = AutoConfig.from_pretrained(path, **hub_args)
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise UserError(f"{path} needs its own code to load; rerun with --trust-remote-code if you trust it") from None
        raise UserError(f"{path}: config.json is not a model config transformers knows ({_first_line(e)})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot load the config ({_first_line(e)}); check the id, --revision and your network") from None
    try:
        model, loading = AutoModel.from_pretrained(path, config=config, output_loading_info=True, **hub_args)
    except Exception as e:  # noqa: BLE001 - safetensors, torch and transformers each raise their own types
        raise UserError(f"{path}: the weights failed to load ({_first_line(e)}); check the checkpoint files") from None
    # transformers fills weights missing from the checkpoint with random values and only logs it.
    missing = sorted(map(str, loading.get("missing_keys") or ()))
    if missing:
        raise UserError(
            f"{path}: the checkpoint lacks {len(missing)} weight(s) the model needs (e.g. {missing[0]}), which would be "
            "randomly initialised; give the complete checkpoint"
        )
    check_dual_encoder(model, path)
    try:
        processor = AutoProcessor.from_pretrained(path, **hub_args)
    except (OSError, ValueError, KeyError, TypeError) as e:
        if "trust_remote_code" in str(e):  # a tokenizer or processor with an auto_map to code in the folder
            raise UserError(f"{path}: its tokenizer or processor needs its own code to load; rerun with --trust-remote-code if you trust it") from None
        raise UserError(
            f"{path}: no image processor and tokenizer could be loaded ({_first_line(e)}); save the processor with the model"
        ) from None
    info = ModelInfo(
        path=path,
        revision=revision,
        resolved_commit=getattr(config, "_commit_hash", None),
        is_local=local,
        extra={"loaded_from": "hub cache (the hub could not be reached)"} if hub_args.get("local_files_only") else {},
    )
    key = weights_key(folder if folder is not None else _snapshot_folder(path, info.resolved_commit)) if cache is not None else None
    entry = cache.entry(key) if key is not None else None
    cached = info.weights_fingerprint = entry.read_json("weights-fingerprint") if entry is not None else None
    encoder = HFDualEncoder(model, processor, info=info, device=device, precision=precision, text_normalize=text_normalize,
                            decode=decode)
    if entry is not None and cached is None:
        entry.write_json("weights-fingerprint", encoder.info.weights_fingerprint)
    return encoder


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".msgpack", ".h5")


def weights_key(folder: Path | None) -> dict[str, Any] | None:
    """The cache key of a checkpoint folder's weights: the identity (`files.identity`) of its config and weight
    files; None when there is no folder or no weights in it. A hub snapshot's files are links to blobs named by
    their content, so its key changes with any new weights."""
    from vtde_bench.files import identity

    if folder is None or not folder.is_dir():
        return None
    files = sorted(p for p in folder.iterdir() if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name.endswith(".json")
                                                                    and (p.name == "config.json" or ".index." in p.name)))
    if not any(p.suffix in WEIGHT_SUFFIXES for p in files):
        return None
    return {"kind": "weights-fingerprint", "files": [identity(p) for p in files]}


def _snapshot_folder(model: str, commit: str | None) -> Path | None:
    """The hub cache's snapshot folder of a model at a commit, where the cache holds it."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model, "config.json", revision=commit) if commit else None
    return Path(found).parent if isinstance(found, str) else None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
