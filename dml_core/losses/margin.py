"""Margin loss with learnable per-class boundaries β (Wu et al. 2017, "Sampling matters")."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dml_core.distances import tuple_distances
from dml_core.losses.base import LOSSES, DMLLoss, detached

MARGIN_NORMALIZATIONS = ("active_triplets", "active_terms")
"""What the margin loss divides its summed hinge terms by (its ``normalization`` option)."""


@LOSSES.register("margin")
class MarginLoss(DMLLoss):
    """L = Σ_T ([d(a,p) − β_{y_a} + m]₊ + [β_{y_a} − d(a,n) + m]₊) / N + ν Σ_T β_{y_a}.

    Wu et al. 2017, eq. 4, Euclidean d, β indexed by the anchor's class. Defaults of the official
    code of Roth et al. (2020), ``criteria/margin.py``: m = 0.2, one β per class initialised at 1.2
    and trained at 50× the network's learning rate (``--loss_margin_beta_lr`` 5e-4 at ``--lr``
    1e-5), ν = 0 (``--loss_margin_nu``; ν > 0 adds ν times β_{y_a} summed over the triplets).
    N by ``normalization``: ``"active_triplets"`` (default, the official code) counts the triplets
    with at least one non-zero term, since its ``sum((pos_loss > 0) + (neg_loss > 0))`` adds bool
    tensors, a logical or; ``"active_terms"`` counts the non-zero terms (pytorch-metric-learning's
    ``MarginLoss``), which is up to 2× larger. N = 0 gives 0. d is exact (the official code adds
    1e-8 under the root, so its d(a,a) of a push triplet is 1e-4). Labels are class indices in
    [0, num_classes).
    """

    miner_kind = "triplet"
    needs_num_classes = True

    def __init__(
        self,
        *,
        margin: float = 0.2,
        beta: float = 1.2,
        beta_lr_multiplier: float = 50.0,
        nu: float = 0.0,
        normalization: str = "active_triplets",
        **sizes: int | None,
    ) -> None:
        super().__init__(**sizes)
        assert self.num_classes is not None
        if normalization not in MARGIN_NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {', '.join(MARGIN_NORMALIZATIONS)}, "
                f"got {normalization!r}"
            )
        self.margin = margin
        self.nu = nu
        self.normalization = normalization
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
        if self.normalization == "active_triplets":
            count = ((positive_terms > 0) | (negative_terms > 0)).sum()
        else:
            count = active_terms
        self.stats = {
            "active_fraction": detached(active_terms / (2.0 * triplets.shape[0])),
            "beta_mean": detached(self.beta.mean()),
        }
        loss = (positive_terms + negative_terms).sum() / count.clamp_min(1)
        return loss + self.nu * beta.sum() if self.nu else loss
