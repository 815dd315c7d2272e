"""Where and in which precision a model runs: `--device` and `--precision` resolved, and the memory format."""

from __future__ import annotations

from typing import Any

import torch

from vtde_bench.errors import UserError


def resolve_device(device: str) -> torch.device:
    """`auto` picks CUDA, then MPS, then the CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device not in ("cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise UserError(f"--device {device!r} is not one of auto, cpu, cuda, mps")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if device == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise UserError("--device mps was asked for but Apple's MPS is not available here; use --device cpu (or auto)")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` is bf16 autocast on CUDA (fp16 where bf16 is unsupported) and fp32 elsewhere."""
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise UserError(f"--precision {precision!r} is not one of auto, fp32, bf16, fp16")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def wants_channels_last(model: Any, device: torch.device) -> bool:
    """Whether to run the model channels-last: for convolutional image towers on CUDA.

    There cuDNN's channels-last kernels are the fast ones, under autocast especially;
    a ViT's one patch convolution gains nothing, and on the CPU it is not worth a copy.
    """
    tower = getattr(model, "vision_model", None)
    if device.type != "cuda" or not isinstance(tower, torch.nn.Module):
        return False
    return sum(isinstance(m, torch.nn.Conv2d) for m in tower.modules()) > 1
