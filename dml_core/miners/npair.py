"""N-pair miner: every anchor with a classmate, one positive, and its negatives as rows."""

from __future__ import annotations

import torch
from torch import Tensor

from dml_core.distances import label_masks
from dml_core.miners.base import MINERS, Miner
from dml_core.random_draws import sample_per_row

NEGATIVE_SETS = ("other_classes", "other_pairs")


@MINERS.register("npair")
class NPairMiner(Miner):
    """Rows (a, p(a), n), grouped by anchor by the losses ``npair`` and ``angular``.

    ``negatives="other_classes"`` (default), the official code of Roth et al. 2020
    (``batchminer/npair.py``): every sample with a classmate is an anchor, its positive p(a) is a
    uniform classmate, and its negatives are all samples of other classes (at batch 112 with two
    per class: 112 anchors with 110 negatives each). ``"other_pairs"``, Sohn 2016 (N-pair-mc): one
    (anchor, positive) pair drawn uniformly per class with at least two samples, and the negatives
    of pair i are the positives of all other pairs (56 anchors with 55 negatives).
    """

    kind = "npair"

    def __init__(
        self,
        *,
        negatives: str = "other_classes",
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(seed=seed, generator=generator)
        if negatives not in NEGATIVE_SETS:
            raise ValueError(
                f"negatives must be one of {', '.join(NEGATIVE_SETS)}, got {negatives!r}"
            )
        self.negatives = negatives

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
        if self.negatives == "other_pairs":
            return self.mine_other_pairs(labels)
        positive_mask, negative_mask = label_masks(labels)
        positives, has_positive = sample_per_row(positive_mask, None, self.generator(labels.device))
        anchors, negatives = torch.nonzero(negative_mask & has_positive[:, None], as_tuple=True)
        self.stats["num_pairs"] = has_positive.sum().cpu()
        return torch.stack([anchors, positives[anchors], negatives], dim=1)

    def mine_other_pairs(self, labels: Tensor) -> Tensor:
        anchors, positives = self.draw_pairs(labels)
        num_pairs = anchors.shape[0]
        pair, other = torch.nonzero(
            ~torch.eye(num_pairs, dtype=torch.bool, device=labels.device), as_tuple=True
        )
        self.stats["num_pairs"] = torch.tensor(num_pairs)
        return torch.stack([anchors[pair], positives[pair], positives[other]], dim=1)
