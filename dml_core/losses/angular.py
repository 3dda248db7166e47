"""Angular loss on the ``npair`` miner's rows: the N-pair term plus an angle-bounded term."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dml_core.losses.base import LOSSES, DMLLoss, detached
from dml_core.losses.npair import mean_log1p_sum_exp, npair_term, pair_rows_to_masks


@LOSSES.register("angular")
class AngularLoss(DMLLoss):
    """L = L_npair + λ · mean_a log(1 + Σ_n exp(f_apn)) + w · mean_i ‖xᵢ‖ (Wang et al. 2017, ICCV).

    f_apn = 4 tan²α (x̂_a + x̂_p)·x̂_n − 2 (1 + tan²α) x̂_a·x̂_p on L2-normalised x̂ (eq. 8), the
    N-pair term on the raw embeddings. α = 45°, λ = 2, w = 0.005 as in the official code of
    Roth et al. (2020), ``criteria/angular.py``. Uses the ``npair`` miner's rows (see ``NPairLoss``;
    the official code clamps the N-pair exponents to [−50, 50], which unit embeddings never reach).
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

    def empty_stats(self) -> dict[str, Tensor]:
        return {"npair_term": torch.zeros(()), "angular_term": torch.zeros(())}

    def compute_loss(self, x: Tensor, labels: Tensor, triplets: Tensor | None) -> Tensor:
        assert triplets is not None
        positive_of, has_pair, negative_mask = pair_rows_to_masks(triplets, x.shape[0])
        npair = npair_term(x, positive_of, negative_mask, has_pair)
        unit = F.normalize(x, dim=1)
        unit_positives = unit[positive_of]
        tan_squared = math.tan(math.radians(self.alpha_degrees)) ** 2
        logits = 4.0 * tan_squared * (unit + unit_positives) @ unit.T - 2.0 * (
            1.0 + tan_squared
        ) * (unit * unit_positives).sum(dim=1, keepdim=True)
        angular = mean_log1p_sum_exp(logits, negative_mask, has_pair)
        self.stats = {"npair_term": detached(npair), "angular_term": detached(angular)}
        norm_penalty = x.norm(dim=1).mean()
        return npair + self.angular_weight * angular + self.l2_weight * norm_penalty
