"""SoftTriple: K learned centres per class, no miner."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dml_core.losses.base import LOSSES, DMLLoss, detached
from dml_core.losses.functional import class_mask


@LOSSES.register("softtriple")
class SoftTripleLoss(DMLLoss):
    """SoftTriple loss (Qian et al. 2019, ICCV), K centres per class:

    S_{i,c} = Σ_k softmax_k(x̂ᵢ·w_c^k / γ) x̂ᵢ·w_c^k, L_CE = CE(λ (S − δ·onehot(y)), y),
    R = Σ_c Σ_{t<s} √(2 + 10⁻⁵ − 2 w_c^t·w_c^s) / (C K (K − 1)), L = L_CE + τ R, with unit centres.
    K = 2, γ = 0.1, λ = 8, δ = 0.01, τ = 0.2 and the centres at the network's learning rate
    (``--loss_softtriplet_lrmulti`` 1) are the official defaults of Roth et al. (2020); the
    formulas follow the paper (the official ``criteria/softtriplet.py`` normalises across centres
    and softmaxes over classes instead).
    """

    needs_num_classes = True
    needs_embed_dim = True
    without_miner_reason = "compares samples with learned class centres"

    def __init__(
        self,
        *,
        centers_per_class: int = 2,
        gamma: float = 0.1,
        la: float = 8.0,
        margin: float = 0.01,
        reg_weight: float = 0.2,
        center_lr_multiplier: float = 1.0,
        **sizes: int | None,
    ) -> None:
        super().__init__(**sizes)
        assert self.num_classes is not None and self.embed_dim is not None
        self.centers_per_class = centers_per_class
        self.gamma = gamma
        self.la = la
        self.margin = margin
        self.reg_weight = reg_weight
        num_centers = self.num_classes * centers_per_class
        bound = 1.0 / math.sqrt(num_centers)
        self.centers = nn.Parameter(
            torch.empty(num_centers, self.embed_dim).uniform_(-bound, bound)
        )
        self.param_lr_multiplier = center_lr_multiplier

    def class_similarities(self, x: Tensor) -> Tensor:
        """S_{i,c}: the softmax-weighted similarity of each sample to each class's centres."""
        centers = F.normalize(self.centers.to(x.dtype), dim=1)
        to_centers = (F.normalize(x, dim=1) @ centers.T).view(x.shape[0], self.num_classes, -1)
        weights = torch.softmax(to_centers / self.gamma, dim=2)
        return (weights * to_centers).sum(dim=2)

    def center_regulariser(self, dtype: torch.dtype) -> Tensor:
        """R: mean √(2 + 10⁻⁵ − 2 w_c^t·w_c^s) over the centre pairs t < s of each class."""
        k = self.centers_per_class
        if k < 2:
            return torch.zeros((), dtype=dtype, device=self.centers.device)
        centers = F.normalize(self.centers.to(dtype), dim=1).view(self.num_classes, k, -1)
        similarities = centers @ centers.transpose(1, 2)
        upper = torch.triu(torch.ones(k, k, dtype=torch.bool, device=centers.device), diagonal=1)
        distances = torch.sqrt(2.00001 - 2.0 * similarities[:, upper])
        return distances.sum() / (self.num_classes * k * (k - 1))

    def compute_loss(self, x: Tensor, labels: Tensor, triplets: Tensor | None) -> Tensor:
        similarities = self.class_similarities(x)
        margins = self.margin * class_mask(labels, self.num_classes).to(x.dtype)
        classification = F.cross_entropy(self.la * (similarities - margins), labels)
        regulariser = self.center_regulariser(x.dtype)
        self.stats = {"center_regulariser": detached(regulariser)}
        return classification + self.reg_weight * regulariser
