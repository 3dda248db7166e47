"""N-pair miner (Sohn 2016): one positive pair per class, the other pairs' positives as negatives."""

from __future__ import annotations

import torch
from torch import Tensor

from dml_core.miners.base import MINERS, Miner


@MINERS.register("npair")
class NPairMiner(Miner):
    """Rows (aᵢ, pᵢ, pⱼ) for every pair i and every other pair j ≠ i.

    One (anchor, positive) pair is drawn uniformly per class with at least two samples; the
    negatives of pair i are the positives of all other pairs (Sohn 2016, N-pair-mc). The losses
    ``npair`` and ``angular`` group the rows by anchor. (The official code of Roth et al. 2020
    instead gives every anchor all other-class samples.)
    """

    kind = "npair"

    def draw_pairs(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(anchors, positives): two distinct random members of every class with ≥ 2 samples."""
        size = labels.shape[0]
        keys = torch.rand(size, device=labels.device, generator=self.generator(labels.device))
        shuffled = keys.argsort()
        by_class = labels[shuffled].argsort(stable=True)
        order = shuffled[by_class]
        sorted_labels = labels[order]
        starts_class = torch.ones(size, dtype=torch.bool, device=labels.device)
        starts_class[1:] = sorted_labels[1:] != sorted_labels[:-1]
        has_partner = torch.zeros_like(starts_class)
        has_partner[:-1] = sorted_labels[1:] == sorted_labels[:-1]
        first = torch.nonzero(starts_class & has_partner).squeeze(1)
        return order[first], order[first + 1]

    def mine(self, x: Tensor, labels: Tensor) -> Tensor:
        anchors, positives = self.draw_pairs(labels)
        num_pairs = anchors.shape[0]
        pair, other = torch.nonzero(
            ~torch.eye(num_pairs, dtype=torch.bool, device=labels.device), as_tuple=True
        )
        self.stats["num_pairs"] = torch.tensor(num_pairs)
        return torch.stack([anchors[pair], positives[pair], positives[other]], dim=1)
