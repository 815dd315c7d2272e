"""Linear probes: L2-regularised multinomial logistic regression on fixed features, in torch, and CLIP's search for
its regularisation strength. Pure functions on tensors, no I/O.

The objective is scikit-learn's `LogisticRegression` (lbfgs, multinomial, intercept not penalised) with C = 1/λ:

    sum_i CE(W x_i + b, y_i) + λ/2 · ||W||²

minimised by L-BFGS with a strong-Wolfe line search, in float64. Features stay in their own dtype (float32: 1.28M
ImageNet features × 512 are 2.6 GB) and are read in chunks of rows, so memory is the features plus one chunk's
logits whatever the number of images. Deterministic on a device: no randomness anywhere in the fit.

CLIP's protocol (Radford et al. 2021, appendix A.3): λ is chosen on a validation split by a parametric binary
search that starts at λ ∈ {1e-6, 1e-4, ..., 1e6} and halves the interval around the best value until the
resolution is 8 steps per decade (the grid of 97 values from 1e-6 to 1e6); the head is then refitted on train and
validation together at that λ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

CHUNK = 16384  # rows per chunk: 16,384 × 1,000 classes of float64 logits are 131 MB
START = (-6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0)  # log10 λ of the search's first round
RESOLUTION = 1 / 8  # decades between neighbouring strengths at the end (8 steps per decade)


@dataclass
class Head:
    """A fitted linear head: logits = x @ weight.T + bias."""

    weight: Tensor  # (C, D) float64
    bias: Tensor  # (C,) float64
    strength: float  # λ
    iterations: int = 0

    def logits(self, features: Tensor, *, chunk_size: int = CHUNK) -> Tensor:
        """(N, C) float64 logits."""
        parts = [features[i : i + chunk_size].to(self.weight) @ self.weight.T + self.bias
                 for i in range(0, features.shape[0], chunk_size)]
        return torch.cat(parts) if parts else torch.zeros(0, self.weight.shape[0], dtype=self.weight.dtype)


def fit(features: Tensor, labels: Tensor, num_classes: int, strength: float, *, start: Head | None = None,
        max_iter: int = 1000, tolerance: float = 1e-9, chunk_size: int = CHUNK) -> Head:
    """The head minimising sum CE + strength/2 · ||W||² on (features, labels), warm-started from `start`.

    Raises:
        ValueError: no features, labels out of range, or a strength that is not positive.
    """
    n, dim = features.shape
    labels = labels.to(torch.long)
    if n == 0 or labels.shape != (n,):
        raise ValueError("fit needs at least one feature row and one label per row")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes})")
    if not strength > 0:
        raise ValueError("the regularisation strength must be positive")
    device = features.device
    weight = torch.zeros(num_classes, dim, dtype=torch.float64, device=device)
    bias = torch.zeros(num_classes, dtype=torch.float64, device=device)
    if start is not None:
        weight.copy_(start.weight), bias.copy_(start.bias)
    # The mean objective (the sum's over n): the same minimiser, with gradients of a size the tolerances suit.
    optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                                  tolerance_grad=tolerance, tolerance_change=1e-15)

    def closure() -> Tensor:
        """The objective and its gradient, computed chunk by chunk (softmax − one-hot, times the features)."""
        loss = strength / (2 * n) * (weight * weight).sum()
        grad_w, grad_b = strength / n * weight, torch.zeros_like(bias)
        for i in range(0, n, chunk_size):
            x = features[i : i + chunk_size].to(torch.float64)
            y = labels[i : i + chunk_size]
            logits = x @ weight.T + bias
            lse = torch.logsumexp(logits, 1)
            loss = loss + (lse - logits.gather(1, y[:, None]).squeeze(1)).sum() / n
            error = logits.sub_(lse[:, None]).exp_()  # the softmax, in the logits' own memory
            error[torch.arange(len(y), device=device), y] -= 1
            grad_w += error.T @ x / n
            grad_b += error.sum(0) / n
        weight.grad, bias.grad = grad_w, grad_b
        return loss

    with torch.no_grad():
        optimizer.step(closure)
    state = optimizer.state[optimizer._params[0]]
    return Head(weight, bias, strength, int(state.get("n_iter", 0)))


def ranks(logits: Tensor, labels: Tensor) -> Tensor:
    """Each row's rank of its true class: 1 + the classes scoring at least as high (ties count against the head)."""
    true = logits.gather(1, labels.to(torch.long)[:, None])
    return (logits >= true).sum(1)


def accuracy(head: Head, features: Tensor, labels: Tensor) -> float:
    return (ranks(head.logits(features), labels) == 1).double().mean().item()


@dataclass
class Search:
    """CLIP's search: every strength tried (log10 λ → validation accuracy) and the chosen one."""

    tried: dict[float, float] = field(default_factory=dict)
    best: float = 0.0  # log10 λ

    @property
    def strength(self) -> float:
        return 10.0 ** self.best


def search(train: tuple[Tensor, Tensor], validation: tuple[Tensor, Tensor], num_classes: int, *,
           chunk_size: int = CHUNK) -> Search:
    """Choose λ by CLIP's parametric binary search: validation accuracy of a head fitted on train at each strength;
    among equal accuracies the stronger regularisation wins. Each fit starts from the nearest strength's head."""
    result = Search()
    heads: dict[float, Head] = {}

    def trial(exponent: float) -> None:
        exponent = round(exponent, 6)
        if exponent in result.tried or not START[0] <= exponent <= START[-1]:
            return
        nearest = min(heads, key=lambda e: abs(e - exponent), default=None)
        head = fit(*train, num_classes, 10.0 ** exponent, start=heads.get(nearest), chunk_size=chunk_size)
        heads[exponent] = head
        result.tried[exponent] = accuracy(head, *validation)

    for exponent in START:
        trial(exponent)
    step = START[1] - START[0]
    while True:
        result.best = max(result.tried, key=lambda e: (result.tried[e], e))
        if step <= RESOLUTION:
            return result
        step /= 2
        trial(result.best - step)
        trial(result.best + step)
