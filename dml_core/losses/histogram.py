"""Histogram loss (Ustinova & Lempitsky 2016, NeurIPS)."""

from __future__ import annotations

import torch
from torch import Tensor

from dml_core.losses.base import DMLLoss, connected_zero, detached, register_loss


@register_loss("histogram")
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

    def compute_loss(self, x: Tensor, labels: Tensor, triplets: Tensor | None) -> Tensor:
        first, second = torch.triu_indices(x.shape[0], x.shape[0], offset=1, device=x.device)
        similarities = (x @ x.T)[first, second].clamp(-1.0, 1.0)
        is_positive = (labels[first] == labels[second]).to(x.dtype)
        bin_width = 2.0 / (self.num_bins - 1)
        nodes = torch.linspace(-1.0, 1.0, self.num_bins, dtype=x.dtype, device=x.device)
        weights = torch.relu(1.0 - (similarities[:, None] - nodes[None, :]).abs() / bin_width)
        positive_histogram = (is_positive @ weights) / is_positive.sum().clamp_min(1)
        negative_histogram = ((1.0 - is_positive) @ weights) / (1.0 - is_positive).sum().clamp_min(
            1
        )
        loss = (negative_histogram * positive_histogram.cumsum(dim=0)).sum()
        self.stats = {"overlap": detached(loss)}
        return loss + connected_zero(x)
