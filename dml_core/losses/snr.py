"""Signal-to-noise-ratio triplet loss (Yuan et al. 2019, CVPR)."""

from __future__ import annotations

import torch
from torch import Tensor

from dml_core.losses.base import LOSSES, DMLLoss, detached, nonzero_mean
from dml_core.losses.functional import triplet_violations

VARIANCE_EPS = 1e-12
OFFICIAL_REG_LAMBDA = 0.005
"""``--loss_snr_reg_lambda`` of the official code, used unless the miner is plain ``distance``."""


def snr_distances(x: Tensor, first: Tensor, second: Tensor) -> Tensor:
    """d_SNR(i, j) = var(x_j − x_i) / var(x_i), variances over the embedding dimensions."""
    noise_variance = torch.var(x[second] - x[first], dim=1)
    signal_variance = torch.var(x[first], dim=1).clamp_min(VARIANCE_EPS)
    return noise_variance / signal_variance


@LOSSES.register("snr")
class SNRLoss(DMLLoss):
    """L = Σ_T [d_SNR(a,p) − d_SNR(a,n) + m]₊ / #(non-zero) + λ · mean_T |Σ_k x_{a,k}|.

    Yuan et al. 2019, eqs. 5 and 9; m = 0.2 (``--loss_snr_margin``). ``reg_lambda`` None (default)
    is the official code's rule, Roth et al. (2020), ``criteria/snr.py``: λ = 0 when the miner is
    the plain distance-weighted one (``distance``), else λ = 0.005 (``--loss_snr_reg_lambda``;
    with ρ the official miner is ``rho_distance``, so λ stays 0.005). ``use_miner`` applies the
    rule; before it is called λ = 0.005. A number fixes λ for every miner.
    """

    miner_kind = "triplet"

    def __init__(
        self, *, margin: float = 0.2, reg_lambda: float | None = None, **sizes: int | None
    ) -> None:
        super().__init__(**sizes)
        self.margin = margin
        self.fixed_reg_lambda = reg_lambda
        self.reg_lambda = OFFICIAL_REG_LAMBDA if reg_lambda is None else reg_lambda

    def use_miner(self, miner: str | None, rho: float = 0.0) -> None:
        if self.fixed_reg_lambda is None:
            plain_distance = miner == "distance" and rho == 0.0
            self.reg_lambda = 0.0 if plain_distance else OFFICIAL_REG_LAMBDA

    def empty_stats(self) -> dict[str, Tensor]:
        return {"active_fraction": torch.zeros(())}

    def compute_loss(self, x: Tensor, labels: Tensor, triplets: Tensor | None) -> Tensor:
        assert triplets is not None
        violations = triplet_violations(x, triplets, self.margin, distance=snr_distances)
        regulariser = x[triplets[:, 0]].sum(dim=1).abs().mean()
        self.stats = {"active_fraction": detached((violations > 0).float().mean())}
        return nonzero_mean(violations) + self.reg_lambda * regulariser
