"""Margin loss with learnable per-class boundaries β (Wu et al. 2017, "Sampling matters")."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dml_core.distances import tuple_distances
from dml_core.losses.base import LOSSES, DMLLoss, detached


@LOSSES.register("margin")
class MarginLoss(DMLLoss):
    """L = Σ_T ([d(a,p) − β_{y_a} + m]₊ + [β_{y_a} − d(a,n) + m]₊) / #(non-zero terms).

    Wu et al. 2017, eq. 4, Euclidean d. Defaults of the official code of Roth et al. (2020),
    ``criteria/margin.py``: m = 0.2, one β per class initialised at 1.2 and trained at 50× the
    network's learning rate (``--loss_margin_beta_lr`` 5e-4 at ``--lr`` 1e-5), no β regulariser
    (ν = 0); the sum is divided by the number of non-zero positive and negative terms. Labels must
    be class indices in [0, num_classes).
    """

    miner_kind = "triplet"
    needs_num_classes = True

    def __init__(
        self,
        *,
        margin: float = 0.2,
        beta: float = 1.2,
        beta_lr_multiplier: float = 50.0,
        **sizes: int | None,
    ) -> None:
        super().__init__(**sizes)
        assert self.num_classes is not None
        self.margin = margin
        self.beta = nn.Parameter(torch.full((self.num_classes,), float(beta)))
        self.param_lr_multiplier = beta_lr_multiplier

    def empty_stats(self) -> dict[str, Tensor]:
        return {"active_fraction": torch.zeros(()), "beta_mean": detached(self.beta.mean())}

    def compute_loss(self, x: Tensor, labels: Tensor, triplets: Tensor | None) -> Tensor:
        assert triplets is not None
        anchors, positives, negatives = triplets.unbind(dim=1)
        beta = self.beta.to(x.dtype)[labels[anchors]]
        positive_terms = torch.relu(tuple_distances(x, anchors, positives) - beta + self.margin)
        negative_terms = torch.relu(beta - tuple_distances(x, anchors, negatives) + self.margin)
        active_terms = (positive_terms > 0).sum() + (negative_terms > 0).sum()
        self.stats = {
            "active_fraction": detached(active_terms / (2.0 * triplets.shape[0])),
            "beta_mean": detached(self.beta.mean()),
        }
        return (positive_terms + negative_terms).sum() / active_terms.clamp_min(1)
