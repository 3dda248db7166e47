"""Classification losses on normalised class weights: normalised softmax and ArcFace."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dml_core.losses.base import LOSSES, DMLLoss, detached
from dml_core.losses.functional import class_mask

COSINE_CLAMP = 1e-7


def uniform_class_weights(num_classes: int, embed_dim: int) -> nn.Parameter:
    """C×d class weights drawn from U(−1/√d, 1/√d), as in the official code."""
    bound = 1.0 / math.sqrt(embed_dim)
    return nn.Parameter(torch.empty(num_classes, embed_dim).uniform_(-bound, bound))


def class_cosines(x: Tensor, class_weights: Tensor) -> Tensor:
    """cos θ_{i,c} between each embedding and each class weight."""
    return F.normalize(x, dim=1) @ F.normalize(class_weights.to(x.dtype), dim=1).T


@LOSSES.register("softmax")
class NormalizedSoftmaxLoss(DMLLoss):
    """L = CE(cos θ / T, y): softmax over cosines to normalised class weights (Zhai & Wu 2019).

    T = 0.05 and class-weight lr 1e-5 as in the official code of Roth et al. (2020),
    ``criteria/softmax.py`` (``--loss_softmax_temperature``, ``--loss_softmax_lr``).
    """

    needs_num_classes = True
    needs_embed_dim = True
    without_miner_reason = "classifies against learned class weights"

    def __init__(
        self, *, temperature: float = 0.05, class_lr: float = 1e-5, **sizes: int | None
    ) -> None:
        super().__init__(**sizes)
        assert self.num_classes is not None and self.embed_dim is not None
        self.temperature = temperature
        self.class_weights = uniform_class_weights(self.num_classes, self.embed_dim)
        self.param_lr = class_lr

    def compute_loss(self, x: Tensor, labels: Tensor, triplets: Tensor | None) -> Tensor:
        logits = class_cosines(x, self.class_weights) / self.temperature
        self.stats = {"accuracy": detached((logits.argmax(dim=1) == labels).float().mean())}
        return F.cross_entropy(logits, labels)


@LOSSES.register("arcface")
class ArcFaceLoss(DMLLoss):
    """L = CE(s · [cos θ with the target logit replaced by cos(θ_y + m)], y) (Deng et al. 2019).

    The additive angular margin m = 0.5 rad goes on the target logit only; where θ_y + m > π the
    target logit becomes cos θ_y − m sin m so the logit keeps decreasing in θ (the paper's
    reference implementation). s = 16 and class-weight lr 5e-4 follow the official code of
    Roth et al. (2020), ``criteria/arcface.py`` (whose margin shift is applied to every logit of
    the row and therefore cancels in the softmax; here it is applied to the target only).
    """

    needs_num_classes = True
    needs_embed_dim = True
    without_miner_reason = "classifies against learned class weights"

    def __init__(
        self,
        *,
        margin: float = 0.5,
        scale: float = 16.0,
        class_lr: float = 5e-4,
        **sizes: int | None,
    ) -> None:
        super().__init__(**sizes)
        assert self.num_classes is not None and self.embed_dim is not None
        self.margin = margin
        self.scale = scale
        self.class_weights = uniform_class_weights(self.num_classes, self.embed_dim)
        self.param_lr = class_lr

    def compute_loss(self, x: Tensor, labels: Tensor, triplets: Tensor | None) -> Tensor:
        cosines = class_cosines(x, self.class_weights).clamp(-1 + COSINE_CLAMP, 1 - COSINE_CLAMP)
        target_cosines = cosines.gather(1, labels[:, None]).squeeze(1)
        target_angles = torch.acos(target_cosines)
        with_margin = torch.where(
            target_angles <= math.pi - self.margin,
            torch.cos(target_angles + self.margin),
            target_cosines - self.margin * math.sin(self.margin),
        )
        is_target = class_mask(labels, self.num_classes)
        logits = torch.where(is_target, with_margin[:, None], cosines) * self.scale
        self.stats = {"mean_target_angle": detached(target_angles.mean())}
        return F.cross_entropy(logits, labels)
