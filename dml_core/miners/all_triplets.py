"""All-triplets miner: every valid (anchor, positive, negative) triplet of the batch."""

from __future__ import annotations

from torch import Tensor

from dml_core.distances import label_masks
from dml_core.miners.base import MINERS, Miner


@MINERS.register("all")
class AllTripletsMiner(Miner):
    """Rows (a, p, n) for every a, every classmate p ≠ a and every n of another class, in
    lexicographic order: T = Σ_a (n_{y_a} − 1)(N − n_{y_a}) rows for class sizes n_c.

    The triplet set of the diagonal-lines toy of Roth et al. (2020, §4.1), whose loss averages over
    every triplet of the batch. Unlike the per-anchor miners it gives many rows per anchor; as a
    ``triplet`` miner it takes ρ-regularization, which then swaps each row independently.
    """

    kind = "triplet"

    def mine(self, x: Tensor, labels: Tensor) -> Tensor:
        positive_mask, negative_mask = label_masks(labels)
        return (positive_mask[:, :, None] & negative_mask[:, None, :]).nonzero()
