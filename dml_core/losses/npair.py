"""N-pair and angular losses on the ``npair`` miner's rows."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dml_core.losses.base import DMLLoss, connected_zero, detached, register_loss
from dml_core.losses.functional import grouped_log1p_sum_exp


def mean_over_anchors(terms: Tensor, anchors: Tensor, size: int) -> Tensor:
    """mean over anchors a of log(1 + Σ_{rows of a} e^{terms}) (vectorised per-anchor groups)."""
    per_anchor, present = grouped_log1p_sum_exp(terms, anchors, size)
    return (per_anchor * present).sum() / present.sum().clamp_min(1)


@register_loss("npair")
class NPairLoss(DMLLoss):
    """L = mean_a log(1 + Σ_n exp(x_a·x_n − x_a·x_p)) + w · mean_i ‖xᵢ‖ (Sohn 2016, NeurIPS).

    Rows (a, p, n) come from the ``npair`` miner: one (a, p) pair per class and every other pair's
    positive as a negative. w = 0.005 (``--loss_npair_l2`` of the official code of Roth et al.
    2020, ``criteria/npair.py``; the paper's 0.02 times their 0.25).
    """

    miner_kind = "npair"

    def __init__(self, *, l2_weight: float = 0.005, **sizes: int | None) -> None:
        super().__init__(**sizes)
        self.l2_weight = l2_weight

    def compute_loss(self, x: Tensor, labels: Tensor, triplets: Tensor | None) -> Tensor:
        assert triplets is not None
        if triplets.shape[0] == 0:
            self.stats = {}
            return connected_zero(x)
        anchors, positives, negatives = triplets.unbind(dim=1)
        logits = (x[anchors] * (x[negatives] - x[positives])).sum(dim=1)
        self.stats = {}
        return (
            mean_over_anchors(logits, anchors, x.shape[0]) + self.l2_weight * x.norm(dim=1).mean()
        )


@register_loss("angular")
class AngularLoss(DMLLoss):
    """L = L_npair + λ · mean_a log(1 + Σ_n exp(f_apn)) + w · mean_i ‖xᵢ‖ (Wang et al. 2017, ICCV).

    f_apn = 4 tan²α (x̂_a + x̂_p)·x̂_n − 2 (1 + tan²α) x̂_a·x̂_p on L2-normalised x̂ (eq. 8), the
    N-pair term on the raw embeddings. α = 45°, λ = 2, w = 0.005 as in the official code of
    Roth et al. (2020), ``criteria/angular.py``. Uses the ``npair`` miner's rows.
    """

    miner_kind = "npair"

    def __init__(
        self,
        *,
        alpha_degrees: float = 45.0,
        angular_weight: float = 2.0,
        l2_weight: float = 0.005,
        **sizes: int | None,
    ) -> None:
        super().__init__(**sizes)
        self.alpha_degrees = alpha_degrees
        self.angular_weight = angular_weight
        self.l2_weight = l2_weight

    def compute_loss(self, x: Tensor, labels: Tensor, triplets: Tensor | None) -> Tensor:
        assert triplets is not None
        if triplets.shape[0] == 0:
            self.stats = {"npair_term": torch.zeros(()), "angular_term": torch.zeros(())}
            return connected_zero(x)
        anchors, positives, negatives = triplets.unbind(dim=1)
        npair_logits = (x[anchors] * (x[negatives] - x[positives])).sum(dim=1)
        npair_term = mean_over_anchors(npair_logits, anchors, x.shape[0])
        unit = F.normalize(x, dim=1)
        tan_squared = math.tan(math.radians(self.alpha_degrees)) ** 2
        angular_logits = 4.0 * tan_squared * (
            (unit[anchors] + unit[positives]) * unit[negatives]
        ).sum(dim=1) - 2.0 * (1.0 + tan_squared) * (unit[anchors] * unit[positives]).sum(dim=1)
        angular_term = mean_over_anchors(angular_logits, anchors, x.shape[0])
        self.stats = {"npair_term": detached(npair_term), "angular_term": detached(angular_term)}
        norm_penalty = x.norm(dim=1).mean()
        return npair_term + self.angular_weight * angular_term + self.l2_weight * norm_penalty
