"""Zero-shot evaluation while a dual encoder trains: a `transformers.Trainer` callback.

`ZeroShotEvalCallback` runs `vtde_bench.evaluate` on the model being trained every
N steps and logs the scores as `eval_zeroshot_<task>_<metric>`. It evaluates
through `TrainingEncoder`, an `HFDualEncoder` that does the work of a locked tower
once: when every parameter of a tower has `requires_grad=False` (the image tower
under LiT), the tower's outputs before its projection are kept, keyed by a digest
of each row's preprocessed inputs, and only the projection runs at later
evaluations. The kept outputs are dropped when the tower's weights change.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch
from PIL import Image
from torch import Tensor
from transformers import TrainerCallback

from vtde_bench import api
from vtde_bench.errors import UserError
from vtde_bench.encoders.base import ModelInfo, weights_fingerprint
from vtde_bench.encoders.hf import HFDualEncoder
from vtde_bench.api import Results, RunOptions, check_inputs
from vtde_bench.tasks import Task

ROW_KEYS = "vtde_row_keys"  # added to a locked tower's preprocessed inputs; no model takes an argument of this name
_TOWERS = {"images": ("vision_model", "visual_projection", "get_image_features"),
           "texts": ("text_model", "text_projection", "get_text_features")}  # (tower, projection, feature method)


def _row_digests(inputs: dict[str, Any]) -> list[str]:
    """One digest per row of the preprocessed inputs: equal digests mean equal tower inputs."""
    tensors = {k: v for k, v in sorted(inputs.items()) if isinstance(v, Tensor)}
    rows = next(iter(tensors.values())).shape[0]
    digests = []
    for i in range(rows):
        h = hashlib.blake2b(digest_size=16)
        for name, value in tensors.items():
            row = value[i].detach().cpu().contiguous()
            h.update(f"{name}|{row.dtype}|{tuple(row.shape)}|".encode())
            h.update(row.reshape(-1).view(torch.uint8).numpy())
        digests.append(h.hexdigest())
    return digests


@dataclass
class _LockedTower:
    module: torch.nn.Module
    projection: torch.nn.Module | None  # the trainable part that still runs at every evaluation; None: identity (SigLIP)
    fingerprint: str  # of the tower's weights: its kept outputs are valid for these weights only
    outputs: dict[str, Tensor] = field(default_factory=dict)  # row digest → tower output (pooler output), on the CPU

    def project(self, pooled: Tensor) -> Tensor:
        return pooled if self.projection is None else self.projection(pooled)


class TrainingEncoder(HFDualEncoder):
    """An `HFDualEncoder` over a model in training that runs each locked tower once per distinct input.

    Build it once and call `refresh()` before each evaluation. The model stays on its
    device (it is never moved), and the caller restores its training mode.
    """

    def __init__(self, model: Any, processor: Any, *, precision: str = "auto"):
        self._locked: dict[str, _LockedTower] = {}  # set up in _probe_width, which the base class calls
        where = next(model.parameters()).device
        device = str(where) if where.type == "cuda" else where.type  # evaluate where it trains: never moved
        info = ModelInfo(path=str(getattr(model, "name_or_path", "") or type(model).__name__))
        super().__init__(model, processor, info=info, device=device, precision=precision)

    def __getstate__(self) -> dict[str, Any]:
        # Input workers only preprocess: they need to know which towers are locked, not their outputs.
        state = dict(self.__dict__)
        state["_locked"] = {kind: replace(t, outputs={}) for kind, t in self._locked.items()}
        return state

    @property
    def locked(self) -> tuple[str, ...]:
        """The kinds ("images", "texts") whose tower outputs are reused."""
        return tuple(self._locked)

    def refresh(self) -> None:
        """Before an evaluation: eval mode, new weights fingerprint, kept outputs of changed towers dropped.

        Cost: sha256 over the whole state dict (for the results' provenance and the
        embedding cache key) plus over each locked tower's (to check it is unchanged),
        one read of the weights: well under a second for a ViT-B CLIP, small beside an evaluation.
        """
        self.model.eval()
        self.info.weights_fingerprint = weights_fingerprint(self.model.state_dict())
        for kind in _TOWERS:
            self._lock(kind)

    def _probe_width(self) -> int:
        for kind in _TOWERS:
            self._lock(kind)
        return super()._probe_width()

    def _lock(self, kind: str) -> None:
        """Start, keep or stop reusing the outputs of `kind`'s tower."""
        tower_name, projection_name, method = _TOWERS[kind]
        tower = getattr(self.model, tower_name, None)
        params = list(tower.parameters()) if isinstance(tower, torch.nn.Module) else []
        if not params or any(p.requires_grad for p in params):
            self._locked.pop(kind, None)
            return
        fingerprint = weights_fingerprint(tower.state_dict())
        if kind in self._locked and self._locked[kind].fingerprint == fingerprint:
            return
        self._locked.pop(kind, None)
        candidate = _LockedTower(tower, getattr(self.model, projection_name, None), fingerprint)
        # Check on a probe that projection(tower output) is what the feature method computes;
        # a model that pools its tower otherwise is evaluated in full, as HFDualEncoder does.
        inputs = self._inputs(kind, [Image.new("RGB", (32, 32), (127, 127, 127))] if kind == "images" else ["a photo."])
        # Read in the hook: get_*_features overwrites the output object's pooler_output with the projection.
        seen: list[Tensor | None] = []
        handle = tower.register_forward_hook(lambda module, args, output: seen.append(_pooled(output)))
        try:
            full = self._run(getattr(self.model, method), inputs)
        finally:
            handle.remove()
        pooled = seen[0] if len(seen) == 1 else None
        if pooled is not None and torch.allclose(self._run(candidate.project, {"pooled": pooled}), full, atol=1e-5):
            candidate.outputs[inputs[ROW_KEYS][0]] = pooled[0].cpu()  # the probe's tower ran once, already
            self._locked[kind] = candidate

    def _inputs(self, kind: str, items: list[Any]) -> dict[str, Any]:
        inputs = super().image_inputs(items) if kind == "images" else super().text_inputs(items)
        return {**inputs, ROW_KEYS: _row_digests(inputs)}

    def image_inputs(self, images: list[Image.Image]) -> dict[str, Any]:
        # Runs in the input workers, so the digests are computed in parallel with the model.
        return self._inputs("images", images) if "images" in self._locked else super().image_inputs(images)

    def text_inputs(self, texts: list[str]) -> dict[str, Any]:
        return self._inputs("texts", texts) if "texts" in self._locked else super().text_inputs(texts)

    def embed_image_inputs(self, inputs: dict[str, Any]) -> Tensor:
        return self._embed("images", inputs) if "images" in self._locked else super().embed_image_inputs(inputs)

    def embed_text_inputs(self, inputs: dict[str, Any]) -> Tensor:
        return self._embed("texts", inputs) if "texts" in self._locked else super().embed_text_inputs(inputs)

    def _embed(self, kind: str, inputs: dict[str, Any]) -> Tensor:
        tower = self._locked[kind]
        inputs = dict(inputs)
        keys = inputs.pop(ROW_KEYS, None) or _row_digests(inputs)
        missing = [i for i, key in enumerate(keys) if key not in tower.outputs]
        if missing:
            rows = torch.tensor(missing)
            pooled = self._tower_forward(tower.module, {k: v[rows] for k, v in inputs.items() if isinstance(v, Tensor)})
            tower.outputs.update((keys[i], row) for i, row in zip(missing, pooled))
        pooled = torch.stack([tower.outputs[key] for key in keys])
        return self._run(tower.project, {"pooled": pooled})

    def _tower_forward(self, tower: torch.nn.Module, inputs: dict[str, Tensor]) -> Tensor:
        """(B, H) tower outputs before the projection, on the CPU, in the compute precision (OOM halving included)."""
        return self._run(tower, inputs, raw=True)


def _pooled(output: Any) -> Tensor | None:
    pooled = getattr(output, "pooler_output", None)
    if pooled is None and isinstance(output, tuple) and len(output) > 1:
        pooled = output[1]
    return pooled if isinstance(pooled, Tensor) else None


class ZeroShotEvalCallback(TrainerCallback):
    """Evaluate zero-shot tasks every `every_n_steps` steps of a `transformers.Trainer`.

    Args:
        tasks: registry names, group names, card paths or task specs.
        processor: the model's processor; default: the Trainer's `processing_class`.
        every_n_steps: evaluate when the global step is a multiple of it; None: only
            with `on_evaluate`.
        options: `RunOptions` for `evaluate`; default: nothing written, no embedding
            cache, no bootstrap intervals.
        on_evaluate: also evaluate when the Trainer evaluates, adding the scores to its
            metrics (so `metric_for_best_model` can name one).
        all_metrics: log every metric, not only each task's main one.
        trainer: log through `trainer.log`, which also reaches `report_to` integrations;
            without it the scores are appended to `state.log_history` only.

    `results` holds the latest `Results`; `history` the (step, scores) of every evaluation.
    """

    def __init__(
        self,
        tasks: Sequence[str | Task] | str,
        *,
        processor: Any = None,
        every_n_steps: int | None = 500,
        options: RunOptions | None = None,
        on_evaluate: bool = False,
        all_metrics: bool = False,
        trainer: Any = None,
    ):
        if every_n_steps is not None and every_n_steps < 1:
            raise UserError("every_n_steps must be at least 1, or None to evaluate only with on_evaluate=True")
        self.options = options or RunOptions(output_dir=None, cache=False, bootstrap=0)
        # Checked now, so that a misspelt task or a bad option fails before training starts, not at step N.
        self.specs = check_inputs(None, tasks, self.options)
        self.processor = processor
        self.every_n_steps = every_n_steps
        self.on_evaluate_too = on_evaluate
        self.all_metrics = all_metrics
        self.trainer = trainer
        self.encoder: TrainingEncoder | None = None
        self.results: Results | None = None
        self.history: list[tuple[int, dict[str, float]]] = []

    def evaluate(self, model: Any, processor: Any = None) -> dict[str, float]:
        """Evaluate `model` now (eval mode, no gradients, each module's training mode restored after); its scores."""
        modes = [(module, module.training) for module in model.modules()]
        try:
            with torch.no_grad():
                if self.encoder is None or self.encoder.model is not model:
                    # The Trainer's processing_class serves only if it is a whole processor, not a tokenizer.
                    processor = self.processor or (processor if hasattr(processor, "image_processor") else None)
                    if processor is None:
                        raise UserError("ZeroShotEvalCallback needs processor= (the model's image processor and tokenizer)")
                    self.encoder = TrainingEncoder(model, processor, precision=self.options.precision)
                else:
                    self.encoder.refresh()
                self.results = api.evaluate(self.encoder, self.specs, options=self.options)
        finally:
            for module, training in modes:
                module.training = training
        return {
            f"eval_zeroshot_{r.task_name}_{name}": value
            for r in self.results for name, value in r.metrics.items()
            if self.all_metrics or name == r.main_metric
        }

    def _scores(self, state: Any, kwargs: dict[str, Any]) -> dict[str, float]:
        if self.history and self.history[-1][0] == state.global_step:
            return self.history[-1][1]  # already evaluated at this step
        scores = self.evaluate(kwargs["model"], kwargs.get("processing_class"))
        self.history.append((state.global_step, scores))
        if self.trainer is not None:
            self.trainer.log(dict(scores))
        else:  # what Trainer.log writes
            state.log_history.append({**scores, "epoch": state.epoch, "step": state.global_step})
        return scores

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.every_n_steps is not None and state.global_step % self.every_n_steps == 0:
            self._scores(state, kwargs)

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kwargs: Any) -> None:
        if self.on_evaluate_too and metrics is not None:
            metrics.update(self._scores(state, kwargs))
