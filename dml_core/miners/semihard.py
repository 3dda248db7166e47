"""Semi-hard negative miner (Schroff et al. 2015, FaceNet)."""

from __future__ import annotations

import torch
from torch import Tensor

from dml_core.distances import label_masks, pairwise_distances
from dml_core.miners.base import MINERS, Miner, stack_rows
from dml_core.random_draws import sample_per_row


@MINERS.register("semihard")
class SemihardMiner(Miner):
    """Positive: a uniform classmate p; negative: uniform among d(a,p) < d(a,n) < d(a,p) + m.

    Falls back to a uniform negative when no semi-hard one exists. m = 0.2 (the triplet margin,
    as the official code of Roth et al. 2020 reads it from the loss). Euclidean d.
    """

    kind = "triplet"

    def __init__(
        self,
        *,
        margin: float = 0.2,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(seed=seed, generator=generator)
        self.margin = margin

    def mine(self, x: Tensor, labels: Tensor) -> Tensor:
        positive_mask, negative_mask = label_masks(labels)
        distances = pairwise_distances(x)
        generator = self.generator(x.device)
        positives, has_positive = sample_per_row(positive_mask, None, generator)
        positive_distances = distances.gather(1, positives[:, None])
        semihard = (
            negative_mask
            & (distances > positive_distances)
            & (distances < positive_distances + self.margin)
        )
        allowed = torch.where(semihard.any(dim=1, keepdim=True), semihard, negative_mask)
        negatives, has_negative = sample_per_row(allowed, None, generator)
        has_semihard = semihard.any(dim=1) & has_positive
        self.stats["semihard_fraction"] = has_semihard.sum() / has_positive.sum().clamp_min(1)
        return stack_rows(positives, negatives, has_positive & has_negative)
