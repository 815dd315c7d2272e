"""Where a `--model` argument points: a local checkpoint folder (checked), a hub id, or the hub cache
when the hub cannot be reached.

Light on purpose (no torch, no transformers), so that a mistyped path fails in
a fraction of a second, before the heavy libraries load.
"""

from __future__ import annotations

import re
from pathlib import Path

from vtde_bench.errors import UserError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
LOCAL_DIR, HF_HUB = "local-dir:", "hf-hub:"  # open_clip's schemas
OPEN_CLIP_CONFIG = "open_clip_config.json"


def wants_open_clip(model: str, pretrained: str | None) -> bool:
    """Whether `--model` names an open_clip model (the precedence the README states): a `local-dir:` or `hf-hub:`
    prefix; any name with `--pretrained`; a folder with `open_clip_config.json` and no `config.json` (a folder
    with both, as laion/* repos ship, loads through transformers unless prefixed)."""
    if model.startswith((LOCAL_DIR, HF_HUB)) or pretrained is not None:
        return True
    folder = Path(model).expanduser()
    return folder.is_dir() and (folder / OPEN_CLIP_CONFIG).is_file() and not (folder / "config.json").is_file()


def is_local(path: str) -> bool:
    """A path that exists, or cannot be a hub id, or is spelled like a path (`./`, `/`, `~`)."""
    return Path(path).exists() or not _HUB_ID.match(path) or path.startswith((".", "/", "~"))


def local_model_folder(path: str, revision: str | None = None) -> Path | None:
    """The checkpoint folder `path` names, checked; None for a hub id.

    Raises:
        UserError: a missing folder, a file, a folder without config.json, or --revision with a folder.
    """
    if not is_local(path):
        return None
    folder = Path(path).expanduser()
    if not folder.exists():
        raise UserError(f"--model {path}: no such folder; give a save_pretrained folder or a hub id like org/name")
    if not folder.is_dir():
        raise UserError(f"--model {path} is a file; give the folder that holds config.json and the weights")
    if not (folder / "config.json").is_file():
        if any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")) or any(folder.glob("*.pt*")):
            raise UserError(f"--model {path} has no config.json (nor {OPEN_CLIP_CONFIG}), only weights: the architecture "
                            "and preprocessing are unknown; add the config (save_pretrained), or name an open_clip "
                            "architecture with --pretrained FILE")
        raise UserError(f"--model {path} has no config.json; give a folder written by save_pretrained")
    if revision is not None:
        raise UserError("--revision applies to hub ids only; a local folder has no revisions")
    return folder


def hub_model_from_cache(model: str, revision: str | None) -> bool:
    """Whether a hub `--model` must load from the local hub cache: the hub cannot be reached, but the cache
    holds the model. False when the hub answers (or `HF_HUB_OFFLINE` says to use the cache anyway).

    Raises:
        UserError: the hub cannot be reached and the model is not in the cache (within seconds, not a minute).
    """
    from vtde_bench import hub

    if hub.offline() or hub.unreachable(hub.endpoint()) is None:
        return False
    if model_is_cached(model, revision):
        return True
    hub.check_reachable(f"--model {model}", "check your network, or give a local save_pretrained folder")
    return False  # pragma: no cover - check_reachable raised


def model_is_cached(model: str, revision: str | None) -> bool:
    """Whether the hub cache holds the model's config at that revision (so it can load without the hub)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model, "config.json", revision=revision)
    return isinstance(found, str)
