"""ProxyNCA: one learned proxy per class, no miner."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dml_core.distances import cross_squared_distances
from dml_core.losses.base import LOSSES, DMLLoss, detached
from dml_core.losses.functional import class_mask, masked_logsumexp


@LOSSES.register("proxynca")
class ProxyNCALoss(DMLLoss):
    """L = mean_i [ ‖x̃ᵢ − p̃_{yᵢ}‖² + log Σ_{c≠yᵢ} exp(−‖x̃ᵢ − p̃_c‖²) ] (Movshovitz-Attias et al. 2017).

    x̃ = s·x/‖x‖, p̃ = s·p/‖p‖ with s = 3; one proxy per class initialised N(0, 1)/8, trained at
    50× the network's learning rate (``--loss_proxynca_lrmulti`` 50) — the official code of Roth et
    al. (2020), ``criteria/proxynca.py``.
    """

    needs_num_classes = True
    needs_embed_dim = True
    without_miner_reason = "compares samples with learned class proxies"

    def __init__(
        self, *, scale: float = 3.0, proxy_lr_multiplier: float = 50.0, **sizes: int | None
    ) -> None:
        super().__init__(**sizes)
        assert self.num_classes is not None and self.embed_dim is not None
        self.scale = scale
        self.proxies = nn.Parameter(torch.randn(self.num_classes, self.embed_dim) / 8.0)
        self.param_lr_multiplier = proxy_lr_multiplier

    def compute_loss(self, x: Tensor, labels: Tensor, triplets: Tensor | None) -> Tensor:
        points = self.scale * F.normalize(x, dim=1)
        proxies = self.scale * F.normalize(self.proxies.to(x.dtype), dim=1)
        squared = cross_squared_distances(points, proxies)
        is_own_class = class_mask(labels, self.num_classes)
        own_distance = squared.gather(1, labels[:, None]).squeeze(1)
        per_sample = own_distance + masked_logsumexp(-squared, ~is_own_class)
        self.stats = {"own_proxy_distance": detached(own_distance.mean())}
        return per_sample.mean()
