"""Generalised lifted structure loss (Hermans et al. 2017, after Oh Song et al. 2016)."""

from __future__ import annotations

import torch
from torch import Tensor

from dml_core.distances import pairwise_distances
from dml_core.losses.base import LOSSES, DMLLoss, detached
from dml_core.losses.functional import masked_logsumexp


def rows_to_masks(triplets: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """N×N masks of the (anchor, positive) and (anchor, negative) pairs present in the rows."""
    anchors, positives, negatives = triplets.unbind(dim=1)
    positive_mask = torch.zeros(size, size, dtype=torch.bool, device=triplets.device)
    negative_mask = torch.zeros_like(positive_mask)
    positive_mask[anchors, positives] = True
    negative_mask[anchors, negatives] = True
    return positive_mask, negative_mask


@LOSSES.register("lifted")
class LiftedStructureLoss(DMLLoss):
    """L = mean_a [log Σ_{p∈Pₐ} e^{d(a,p)} + log Σ_{n∈Nₐ} e^{m − d(a,n)}]₊ + w · mean_i ‖xᵢ‖.

    Generalised lifted structure loss (Hermans et al. 2017, "In defense of the triplet loss",
    p. 4), Euclidean d. Pₐ, Nₐ are all of a's classmates and all other samples, as given by the
    ``lifted`` miner's rows. m = 1 and the embedding-norm penalty w = 0.005 follow the official
    code of Roth et al. (2020), ``criteria/lifted.py``.
    """

    miner_kind = "lifted"

    def __init__(self, *, margin: float = 1.0, l2_weight: float = 0.005, **sizes: int | None):
        super().__init__(**sizes)
        self.margin = margin
        self.l2_weight = l2_weight

    def empty_stats(self) -> dict[str, Tensor]:
        return {"num_anchors": torch.zeros((), dtype=torch.long)}

    def compute_loss(self, x: Tensor, labels: Tensor, triplets: Tensor | None) -> Tensor:
        assert triplets is not None
        positive_mask, negative_mask = rows_to_masks(triplets, x.shape[0])
        anchors = positive_mask.any(dim=1) & negative_mask.any(dim=1)
        distances = pairwise_distances(x)
        positive_terms = masked_logsumexp(distances, positive_mask)
        negative_terms = masked_logsumexp(self.margin - distances, negative_mask)
        per_anchor = torch.relu(positive_terms + negative_terms) * anchors
        num_anchors = anchors.sum()
        self.stats = {"num_anchors": detached(num_anchors)}
        norm_penalty = x.norm(dim=1).mean()
        return per_anchor.sum() / num_anchors.clamp_min(1) + self.l2_weight * norm_penalty
