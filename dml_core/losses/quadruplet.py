"""Quadruplet loss on mined (anchor, positive, negative) rows plus a drawn fourth sample."""

from __future__ import annotations

import torch
from torch import Tensor

from dml_core.distances import tuple_distances
from dml_core.losses.base import LOSSES, DMLLoss, detached
from dml_core.losses.functional import triplet_violations
from dml_core.random_draws import DeviceGenerators, sample_per_row


@LOSSES.register("quadruplet")
class QuadrupletLoss(DMLLoss):
    """Quadruplet loss (Chen et al. 2017, CVPR), Euclidean distances as in the official code:

    L = mean_T [d(a,p) − d(a,n) + α₁]₊ + mean_T' [d(a,p) − d(n,k) + α₂]₊, with α₁ = α₂ = 0.2
    (``--loss_quadruplet_margin_alpha_1/2``). The fourth sample k is drawn uniformly per row among
    the samples whose label differs from both the anchor's and the negative's (the paper's
    definition); rows without such a sample only enter the first term. ``seed``/``generator``
    make the draw reproducible.
    """

    miner_kind = "triplet"

    def __init__(
        self,
        *,
        margin_triplet: float = 0.2,
        margin_quadruplet: float = 0.2,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        **sizes: int | None,
    ) -> None:
        super().__init__(**sizes)
        self.margin_triplet = margin_triplet
        self.margin_quadruplet = margin_quadruplet
        self.generators = DeviceGenerators(seed, generator)

    def draw_fourth_samples(self, labels: Tensor, triplets: Tensor) -> tuple[Tensor, Tensor]:
        """Per row, a uniform index k with label[k] ∉ {label[a], label[n]}; and whether one exists."""
        anchor_labels = labels[triplets[:, 0]]
        negative_labels = labels[triplets[:, 2]]
        allowed = (labels[None, :] != anchor_labels[:, None]) & (
            labels[None, :] != negative_labels[:, None]
        )
        return sample_per_row(allowed, None, self.generators.for_device(labels.device))

    def empty_stats(self) -> dict[str, Tensor]:
        return {"active_fraction": torch.zeros(())}

    def compute_loss(self, x: Tensor, labels: Tensor, triplets: Tensor | None) -> Tensor:
        assert triplets is not None
        anchors, positives, negatives = triplets.unbind(dim=1)
        fourth, has_fourth = self.draw_fourth_samples(labels, triplets)
        positive_distances = tuple_distances(x, anchors, positives)
        triplet_terms = triplet_violations(x, triplets, self.margin_triplet)
        quadruplet_terms = torch.relu(
            positive_distances - tuple_distances(x, negatives, fourth) + self.margin_quadruplet
        )
        quadruplet_terms = torch.where(has_fourth, quadruplet_terms, 0.0)
        quadruplet_mean = quadruplet_terms.sum() / has_fourth.sum().clamp_min(1)
        self.stats = {
            "active_fraction": detached((triplet_terms > 0).float().mean()),
            "quadruplet_term": detached(quadruplet_mean),
        }
        return triplet_terms.mean() + quadruplet_mean
