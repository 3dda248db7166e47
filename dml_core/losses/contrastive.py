"""Contrastive loss on the (anchor, positive) and (anchor, negative) pairs of mined triplets."""

from __future__ import annotations

import torch
from torch import Tensor

from dml_core.distances import tuple_distances
from dml_core.losses.base import LOSSES, DMLLoss, detached


@LOSSES.register("contrastive")
class ContrastiveLoss(DMLLoss):
    """L = w₊ · mean_T [d(a,p) − m₊]₊ + mean_T [m₋ − d(a,n)]₊ (Hadsell et al. 2006), Euclidean d.

    Pairs come from the triplet miner's rows; m₊ = 0, m₋ = 1 as in the official code of
    Roth et al. (2020), ``criteria/contrastive.py`` (``--loss_contrastive_pos/neg_margin``).
    ``pos_weight`` w₊ = 1 by default; w₊ = 0 drops the pull term, as the "regularized" run of the
    paper's diagonal-lines toy does (§4.1).
    """

    miner_kind = "triplet"

    def __init__(
        self,
        *,
        pos_margin: float = 0.0,
        neg_margin: float = 1.0,
        pos_weight: float = 1.0,
        **sizes: int | None,
    ) -> None:
        super().__init__(**sizes)
        self.pos_margin = pos_margin
        self.pos_weight = pos_weight
        self.neg_margin = neg_margin

    def empty_stats(self) -> dict[str, Tensor]:
        return {"negative_active_fraction": torch.zeros(())}

    def compute_loss(self, x: Tensor, labels: Tensor, triplets: Tensor | None) -> Tensor:
        assert triplets is not None
        anchors, positives, negatives = triplets.unbind(dim=1)
        positive_terms = torch.relu(tuple_distances(x, anchors, positives) - self.pos_margin)
        negative_terms = torch.relu(self.neg_margin - tuple_distances(x, anchors, negatives))
        self.stats = {"negative_active_fraction": detached((negative_terms > 0).float().mean())}
        return self.pos_weight * positive_terms.mean() + negative_terms.mean()
