"""Histogram loss (Ustinova & Lempitsky 2016, NeurIPS)."""

from __future__ import annotations

import torch
from torch import Tensor

from dml_core.losses.base import LOSSES, DMLLoss, connected_zero, detached


@LOSSES.register("histogram")
class HistogramLoss(DMLLoss):
    """L = Σ_r h⁻_r Φ⁺_r: the probability that a negative pair is more similar than a positive one.

    Over all pairs i < j, similarities s = xᵢ·xⱼ are spread linearly onto R nodes t_r = −1 + rΔ,
    Δ = 2/(R − 1), with weights [1 − |s − t_r|/Δ]₊; h⁺, h⁻ are the normalised positive and negative
    histograms and Φ⁺_r = Σ_{q≤r} h⁺_q (eqs. 2–4). R = 65 as in the official code of Roth et al.
    (2020), ``criteria/histogram.py`` (``--loss_histogram_nbins``).
    """

    def __init__(self, *, num_bins: int = 65, **sizes: int | None) -> None:
        super().__init__(**sizes)
        if num_bins < 2:
            raise ValueError(f"histogram loss needs at least 2 bins, got {num_bins}")
        self.num_bins = num_bins

    def histogram(self, similarities: Tensor, membership: Tensor) -> Tensor:
        """Normalised soft histogram of the similarities whose ``membership`` is 1.

        Each s lies between nodes r and r + 1 and gives them 1 − f and f, f = (s + 1)/Δ − r: the
        triangular kernel [1 − |s − t_r|/Δ]₊ evaluated only where it is non-zero.
        """
        position = (similarities + 1.0) * ((self.num_bins - 1) / 2.0)
        lower = position.detach().floor().clamp(0, self.num_bins - 2).long()
        upper_share = position - lower
        histogram = torch.zeros(self.num_bins, dtype=similarities.dtype, device=similarities.device)
        histogram = histogram.index_add(0, lower, membership * (1.0 - upper_share))
        histogram = histogram.index_add(0, lower + 1, membership * upper_share)
        return histogram / membership.sum().clamp_min(1)

    def compute_loss(self, x: Tensor, labels: Tensor, triplets: Tensor | None) -> Tensor:
        first, second = torch.triu_indices(x.shape[0], x.shape[0], offset=1, device=x.device)
        similarities = (x @ x.T)[first, second].clamp(-1.0, 1.0)
        is_positive = (labels[first] == labels[second]).to(x.dtype)
        positive_histogram = self.histogram(similarities, is_positive)
        negative_histogram = self.histogram(similarities, 1.0 - is_positive)
        loss = (negative_histogram * positive_histogram.cumsum(dim=0)).sum()
        self.stats = {"overlap": detached(loss)}
        return loss + connected_zero(x)
