"""Random triplet miner."""

from __future__ import annotations

from torch import Tensor

from dml_core.distances import label_masks
from dml_core.miners.base import MINERS, Miner, stack_rows
from dml_core.random_draws import sample_per_row


@MINERS.register("random")
class RandomMiner(Miner):
    """One row per anchor: a uniform classmate as positive, a uniform other-class sample as negative.

    As the official code of Roth et al. (2020), ``batchminer/random.py``; anchors without a
    classmate or without a negative are dropped.
    """

    kind = "triplet"

    def mine(self, x: Tensor, labels: Tensor) -> Tensor:
        positive_mask, negative_mask = label_masks(labels)
        generator = self.generator(x.device)
        positives, has_positive = sample_per_row(positive_mask, None, generator)
        negatives, has_negative = sample_per_row(negative_mask, None, generator)
        return stack_rows(positives, negatives, has_positive & has_negative)
