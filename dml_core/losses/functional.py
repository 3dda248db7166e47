"""Vectorised building blocks of the losses only (distances and label masks: ``dml_core.distances``).

No Python loops and no device syncs; empty rows and masked-out entries give 0, never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dml_core.distances import tuple_distances


def tuple_squared_distances(x: Tensor, first: Tensor, second: Tensor) -> Tensor:
    """‖x[first] − x[second]‖² row by row (no square root: smooth everywhere)."""
    return (x[first] - x[second]).pow(2).sum(dim=1)


def triplet_violations(
    x: Tensor,
    triplets: Tensor,
    margin: float,
    distance: Callable[[Tensor, Tensor, Tensor], Tensor] = tuple_distances,
) -> Tensor:
    """[d(a,p) − d(a,n) + m]₊ for each (a, p, n) row, with ``distance(x, first, second)``."""
    anchors, positives, negatives = triplets.unbind(dim=1)
    return torch.relu(distance(x, anchors, positives) - distance(x, anchors, negatives) + margin)


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


def uniform_class_weights(num_classes: int, embed_dim: int) -> nn.Parameter:
    """C×d class weights drawn from U(−1/√d, 1/√d), as in the official code."""
    bound = 1.0 / math.sqrt(embed_dim)
    return nn.Parameter(torch.empty(num_classes, embed_dim).uniform_(-bound, bound))


def class_cosines(x: Tensor, class_weights: Tensor) -> Tensor:
    """cos θ_{i,c} between each embedding and each class weight."""
    return F.normalize(x, dim=1) @ F.normalize(class_weights.to(x.dtype), dim=1).T
