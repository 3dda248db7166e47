"""Lifted-structure miner: every classmate and every other-class sample of each anchor."""

from __future__ import annotations

import torch
from torch import Tensor

from dml_core.distances import label_masks
from dml_core.miners.base import MINERS, Miner


@MINERS.register("lifted")
class LiftedMiner(Miner):
    """Rows (a, p, n) for every anchor a with a classmate, every classmate p ≠ a and every sample n
    of another class — the full positive and negative sets of the official code of Roth et al.
    (2020), ``batchminer/lifted.py``. The ``lifted`` loss rebuilds the per-anchor sets from them.
    """

    kind = "lifted"

    def mine(self, x: Tensor, labels: Tensor) -> Tensor:
        positive_mask, negative_mask = label_masks(labels)
        positive_pairs = torch.nonzero(positive_mask)
        pair, negatives = torch.nonzero(negative_mask[positive_pairs[:, 0]], as_tuple=True)
        return torch.cat([positive_pairs[pair], negatives[:, None]], dim=1)
