"""Vectorised building blocks shared by the losses and the miners (no Python loops, no syncs).

Distances are Euclidean on the rows of ``x`` and are computed in the input's precision; callers pass
float32 (or float64 in tests). A squared distance at or below ``eps`` counts as exactly 0 with a
zero gradient (the square root is only taken of clamped values), so (a, a) pairs stay finite.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

DISTANCE_EPS = 1e-12


def cross_squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """‖aᵢ − bⱼ‖² for all row pairs through inner products: ‖aᵢ‖² + ‖bⱼ‖² − 2 aᵢ·bⱼ, clamped at 0."""
    inner = a @ b.T
    return (a.pow(2).sum(dim=1)[:, None] + b.pow(2).sum(dim=1)[None, :] - 2.0 * inner).clamp_min(
        0.0
    )


def pairwise_squared_distances(x: Tensor) -> Tensor:
    """‖xᵢ − xⱼ‖² for all pairs of rows of ``x``."""
    return cross_squared_distances(x, x)


def safe_sqrt(squared: Tensor, eps: float = DISTANCE_EPS) -> Tensor:
    """√squared, and exactly 0 (zero gradient) where squared ≤ ``eps``."""
    return torch.where(squared > eps, squared.clamp_min(eps).sqrt(), 0.0)


def pairwise_distances(x: Tensor) -> Tensor:
    """‖xᵢ − xⱼ‖ for all pairs of rows of ``x``."""
    return safe_sqrt(pairwise_squared_distances(x))


def tuple_distances(x: Tensor, first: Tensor, second: Tensor) -> Tensor:
    """‖x[first] − x[second]‖ row by row, from the differences themselves (exact for tuples)."""
    return safe_sqrt((x[first] - x[second]).pow(2).sum(dim=1))


def triplet_violations(
    x: Tensor,
    triplets: Tensor,
    margin: float,
    distance: Callable[[Tensor, Tensor, Tensor], Tensor] = tuple_distances,
) -> Tensor:
    """[d(a,p) − d(a,n) + m]₊ for each (a, p, n) row, with ``distance(x, first, second)``."""
    anchors, positives, negatives = triplets.unbind(dim=1)
    return torch.relu(distance(x, anchors, positives) - distance(x, anchors, negatives) + margin)


def label_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(positives, negatives) boolean N×N masks: same label without the diagonal, other label."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def class_mask(labels: Tensor, num_classes: int) -> Tensor:
    """N×C boolean one-hot of the labels (unlike ``F.one_hot``, no device sync to check them)."""
    return labels[:, None] == torch.arange(num_classes, device=labels.device)[None, :]


def masked_logsumexp(values: Tensor, mask: Tensor, *, add_one: bool = False) -> Tensor:
    """Row-wise log Σ_{j: mask} exp(values) (plus exp(0) when ``add_one``); 0 for an empty row.

    Entries outside the mask get no gradient and empty rows give 0 with a zero gradient, never NaN.
    """
    masked = values.masked_fill(~mask, float("-inf"))
    row_max = masked.amax(dim=1, keepdim=True).detach()
    if add_one:
        row_max = row_max.clamp_min(0.0)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    summed = torch.exp(masked - row_max).sum(dim=1)
    if add_one:
        summed = summed + torch.exp(-row_max.squeeze(1))
    nonempty = mask.any(dim=1) | add_one
    safe_sum = torch.where(nonempty, summed, torch.ones_like(summed))
    return torch.where(nonempty, safe_sum.log() + row_max.squeeze(1), torch.zeros_like(summed))


class DeviceGenerators:
    """One ``torch.Generator`` per device, seeded alike, so draws are reproducible anywhere.

    With neither ``seed`` nor ``generator`` the global torch RNG is used (``None`` is returned).
    A given ``generator`` is used as is; it must live on the device of the tensors drawn for.
    """

    def __init__(self, seed: int | None = None, generator: torch.Generator | None = None) -> None:
        if seed is not None and generator is not None:
            raise ValueError("pass either seed or generator, not both")
        self.seed = seed
        self.generator = generator
        self._per_device: dict[torch.device, torch.Generator] = {}

    def for_device(self, device: torch.device) -> torch.Generator | None:
        """The generator to draw with on ``device`` (created on first use when seeded)."""
        if self.generator is not None or self.seed is None:
            return self.generator
        if device not in self._per_device:
            generator = torch.Generator(device=device)
            generator.manual_seed(self.seed)
            self._per_device[device] = generator
        return self._per_device[device]


def sample_per_row(
    allowed: Tensor, log_weights: Tensor | None, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """Draw one column per row with P(j) ∝ exp(log_weights[i, j]) over ``allowed[i]`` (Gumbel-max).

    argmaxⱼ (log wᵢⱼ + Gᵢⱼ) with Gᵢⱼ = −log(−log Uᵢⱼ), U ~ U(0, 1), is an exact draw from the
    normalised weights (no row normalisation needed); ``log_weights=None`` draws uniformly.
    Returns (column, row_has_any_allowed); a row without allowed columns gets column 0 and False.
    """
    uniform = torch.rand(allowed.shape, device=allowed.device, generator=generator)
    scores = uniform.clamp_min_(torch.finfo(uniform.dtype).tiny).log_().neg_().log_().neg_()
    if log_weights is not None:
        scores = scores + log_weights
    scores = scores.masked_fill(~allowed, float("-inf"))
    return scores.argmax(dim=1), allowed.any(dim=1)
