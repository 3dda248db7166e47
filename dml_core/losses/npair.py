"""N-pair loss on the ``npair`` miner's rows, and the N-pair building blocks ``angular`` reuses."""

from __future__ import annotations

import torch
from torch import Tensor

from dml_core.losses.base import LOSSES, DMLLoss, detached
from dml_core.losses.functional import masked_logsumexp


def pair_rows_to_masks(triplets: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """From rows (a, p, n): each anchor's positive p(a), whether a has rows, and the N×N negatives.

    Assumes one positive per anchor, as the ``npair`` miner gives in both of its modes.
    """
    anchors, positives, negatives = triplets.unbind(dim=1)
    positive_of = torch.zeros(size, dtype=torch.long, device=triplets.device)
    positive_of[anchors] = positives
    has_pair = torch.zeros(size, dtype=torch.bool, device=triplets.device)
    has_pair[anchors] = True
    negative_mask = torch.zeros(size, size, dtype=torch.bool, device=triplets.device)
    negative_mask[anchors, negatives] = True
    return positive_of, has_pair, negative_mask


def mean_log1p_sum_exp(logits: Tensor, negative_mask: Tensor, has_pair: Tensor) -> Tensor:
    """mean over anchors with a pair of log(1 + Σ_{n ∈ negatives(a)} exp(logits[a, n]))."""
    per_anchor = masked_logsumexp(logits, negative_mask, add_one=True)
    return (per_anchor * has_pair).sum() / has_pair.sum().clamp_min(1)


def npair_term(x: Tensor, positive_of: Tensor, negative_mask: Tensor, has_pair: Tensor) -> Tensor:
    """mean_a log(1 + Σ_n exp(x_a·x_n − x_a·x_p)) on the raw embeddings."""
    similarities = x @ x.T
    logits = similarities - similarities.gather(1, positive_of[:, None])
    return mean_log1p_sum_exp(logits, negative_mask, has_pair)


@LOSSES.register("npair")
class NPairLoss(DMLLoss):
    """L = mean_a log(1 + Σ_n exp(x_a·x_n − x_a·x_p)) + w · mean_i ‖xᵢ‖ (Sohn 2016, NeurIPS).

    Rows (a, p, n) come from the ``npair`` miner (by default as in the official code: every anchor
    with a classmate, all other-class samples as its negatives); they become N×N masks, so the sums
    are matrix products. w = 0.005 (``--loss_npair_l2`` of the official code of Roth et al. 2020,
    ``criteria/npair.py``; the paper's 0.02 times their 0.25).
    """

    miner_kind = "npair"

    def __init__(self, *, l2_weight: float = 0.005, **sizes: int | None) -> None:
        super().__init__(**sizes)
        self.l2_weight = l2_weight

    def empty_stats(self) -> dict[str, Tensor]:
        return {"num_pairs": torch.zeros((), dtype=torch.long)}

    def compute_loss(self, x: Tensor, labels: Tensor, triplets: Tensor | None) -> Tensor:
        assert triplets is not None
        positive_of, has_pair, negative_mask = pair_rows_to_masks(triplets, x.shape[0])
        self.stats = {"num_pairs": detached(has_pair.sum())}
        loss = npair_term(x, positive_of, negative_mask, has_pair)
        return loss + self.l2_weight * x.norm(dim=1).mean()
