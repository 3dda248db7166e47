"""Soft-hard miner: random hard positives and hard negatives (official code of Roth et al. 2020)."""

from __future__ import annotations

import torch
from torch import Tensor

from dml_core.distances import label_masks, pairwise_distances
from dml_core.miners.base import MINERS, Miner, stack_rows
from dml_core.random_draws import sample_per_row


@MINERS.register("softhard")
class SofthardMiner(Miner):
    """Positive: uniform among classmates farther than the nearest negative (d(a,p) > min_n d(a,n));
    negative: uniform among negatives nearer than the farthest classmate (d(a,n) < max_p d(a,p)).

    Either falls back to a uniform draw from all classmates / negatives when no hard one exists,
    as ``batchminer/softhard.py`` of the official code. Euclidean d.
    """

    kind = "triplet"

    def mine(self, x: Tensor, labels: Tensor) -> Tensor:
        positive_mask, negative_mask = label_masks(labels)
        distances = pairwise_distances(x)
        nearest_negative = distances.masked_fill(~negative_mask, float("inf")).amin(dim=1)
        farthest_positive = distances.masked_fill(~positive_mask, float("-inf")).amax(dim=1)
        hard_positives = positive_mask & (distances > nearest_negative[:, None])
        hard_negatives = negative_mask & (distances < farthest_positive[:, None])
        positive_pool = torch.where(
            hard_positives.any(1, keepdim=True), hard_positives, positive_mask
        )
        negative_pool = torch.where(
            hard_negatives.any(1, keepdim=True), hard_negatives, negative_mask
        )
        generator = self.generator(x.device)
        positives, has_positive = sample_per_row(positive_pool, None, generator)
        negatives, has_negative = sample_per_row(negative_pool, None, generator)
        return stack_rows(positives, negatives, has_positive & has_negative)
