"""Euclidean distances and label masks shared by the losses and the miners (no loops, no syncs).

Distances are computed in the input's precision; callers pass float32 (or float64 in tests). A
squared distance at or below ``eps`` counts as exactly 0 with a zero gradient (the square root is
only taken of clamped values), so (a, a) pairs stay finite.
"""

from __future__ import annotations

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


def label_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(positives, negatives) boolean N×N masks: same label without the diagonal, other label."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same
