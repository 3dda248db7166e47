"""Multi-similarity loss with its built-in pair mining (Wang et al. 2019, CVPR)."""

from __future__ import annotations

from torch import Tensor

from dml_core.distances import label_masks
from dml_core.losses.base import LOSSES, DMLLoss, detached
from dml_core.losses.functional import masked_logsumexp


@LOSSES.register("multisimilarity")
class MultiSimilarityLoss(DMLLoss):
    """L = mean_{valid a} [ 1/α log(1 + Σ_{p∈P̃ₐ} e^{−α(S_ap − λ)}) + 1/β log(1 + Σ_{n∈Ñₐ} e^{β(S_an − λ)}) ].

    S = x xᵀ (cosine similarity of the L2-normalised embeddings). Mining (Wang et al. 2019, eqs.
    7–8): Ñₐ = negatives with S_an + ε > min_p S_ap, P̃ₐ = positives with S_ap − ε < max_n S_an;
    anchors where either set is empty are skipped. α = 2, β = 40, λ = 0.5, ε = 0.1 as in the
    official code of Roth et al. (2020), ``criteria/multisimilarity.py``.
    """

    without_miner_reason = "mines its pairs internally"

    def __init__(
        self,
        *,
        alpha: float = 2.0,
        beta: float = 40.0,
        base: float = 0.5,
        mining_margin: float = 0.1,
        **sizes: int | None,
    ) -> None:
        super().__init__(**sizes)
        self.alpha = alpha
        self.beta = beta
        self.base = base
        self.mining_margin = mining_margin

    def compute_loss(self, x: Tensor, labels: Tensor, triplets: Tensor | None) -> Tensor:
        similarity = x @ x.T
        positives, negatives = label_masks(labels)
        detached_similarity = similarity.detach()
        hardest_positive = detached_similarity.masked_fill(~positives, float("inf")).amin(dim=1)
        hardest_negative = detached_similarity.masked_fill(~negatives, float("-inf")).amax(dim=1)
        mined_negatives = negatives & (
            detached_similarity + self.mining_margin > hardest_positive[:, None]
        )
        mined_positives = positives & (
            detached_similarity - self.mining_margin < hardest_negative[:, None]
        )
        valid = mined_positives.any(dim=1) & mined_negatives.any(dim=1)
        positive_terms = masked_logsumexp(
            -self.alpha * (similarity - self.base), mined_positives, add_one=True
        )
        negative_terms = masked_logsumexp(
            self.beta * (similarity - self.base), mined_negatives, add_one=True
        )
        per_anchor = positive_terms / self.alpha + negative_terms / self.beta
        num_valid = valid.sum()
        self.stats = {"valid_anchor_fraction": detached(valid.float().mean())}
        return (per_anchor * valid).sum() / num_valid.clamp_min(1) + 0.0 * similarity.sum()
