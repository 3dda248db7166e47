"""Distance-weighted negative sampling (Wu et al. 2017, "Sampling matters in deep embedding learning")."""

from __future__ import annotations

import torch
from torch import Tensor

from dml_core.distances import label_masks, pairwise_distances
from dml_core.miners.base import MINERS, Miner, stack_rows
from dml_core.random_draws import sample_per_row

SPHERE_TERM_FLOOR = 1e-6


def log_inverse_sphere_density(distances: Tensor, dim: int, cutoff: float) -> Tensor:
    """log q(d)⁻¹ for pairwise distances of uniform points on the unit sphere in ``dim`` dimensions.

    q(d) ∝ d^{n−2} (1 − d²/4)^{(n−3)/2} (Wu et al. 2017, eq. 3), so
    log q(d)⁻¹ = (2 − n) log d − (n − 3)/2 · log(1 − d²/4), with d clamped below at ``cutoff`` and
    1 − d²/4 floored at 1e-6 (d → 2 would otherwise give an infinite weight).
    """
    clamped = distances.clamp_min(cutoff)
    sphere_term = (1.0 - clamped.pow(2) / 4.0).clamp_min(SPHERE_TERM_FLOOR)
    return (2.0 - dim) * clamped.log() - (dim - 3.0) / 2.0 * sphere_term.log()


@MINERS.register("distance")
class DistanceWeightedMiner(Miner):
    """One row per anchor: a uniform classmate as positive, and one negative drawn with
    probability ∝ q(d(a,n))⁻¹ (computed in log space, see ``log_inverse_sphere_density``).

    Lower cut-off 0.5 as in the official code of Roth et al. (2020), ``batchminer/distance.py``
    (``--miner_distance_lower_cutoff``; its upper cut-off is disabled there too). Anchors without a
    classmate or a negative are dropped.
    """

    kind = "triplet"

    def __init__(
        self,
        *,
        lower_cutoff: float = 0.5,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(seed=seed, generator=generator)
        self.lower_cutoff = lower_cutoff

    def mine(self, x: Tensor, labels: Tensor) -> Tensor:
        positive_mask, negative_mask = label_masks(labels)
        generator = self.generator(x.device)
        positives, has_positive = sample_per_row(positive_mask, None, generator)
        log_weights = log_inverse_sphere_density(
            pairwise_distances(x), x.shape[1], self.lower_cutoff
        )
        negatives, has_negative = sample_per_row(negative_mask, log_weights, generator)
        return stack_rows(positives, negatives, has_positive & has_negative)
