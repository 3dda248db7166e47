"""Normalised softmax: cross-entropy over cosines to learned class weights."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from dml_core.losses.base import LOSSES, DMLLoss, detached
from dml_core.losses.functional import class_cosines, uniform_class_weights


@LOSSES.register("softmax")
class NormalizedSoftmaxLoss(DMLLoss):
    """L = CE(cos θ / T, y): softmax over cosines to normalised class weights (Zhai & Wu 2019).

    T = 0.05 and the class weights at the network's learning rate (``--loss_softmax_lr`` 1e-5 at
    ``--lr`` 1e-5) as in the official code of Roth et al. (2020), ``criteria/softmax.py``.
    """

    needs_num_classes = True
    needs_embed_dim = True
    without_miner_reason = "classifies against learned class weights"

    def __init__(
        self, *, temperature: float = 0.05, class_lr_multiplier: float = 1.0, **sizes: int | None
    ) -> None:
        super().__init__(**sizes)
        assert self.num_classes is not None and self.embed_dim is not None
        self.temperature = temperature
        self.class_weights = uniform_class_weights(self.num_classes, self.embed_dim)
        self.param_lr_multiplier = class_lr_multiplier

    def compute_loss(self, x: Tensor, labels: Tensor, triplets: Tensor | None) -> Tensor:
        logits = class_cosines(x, self.class_weights) / self.temperature
        self.stats = {"accuracy": detached((logits.argmax(dim=1) == labels).float().mean())}
        return F.cross_entropy(logits, labels)
