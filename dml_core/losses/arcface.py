"""ArcFace: an additive angular margin on the target class's normalised weight."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dml_core.losses.base import LOSSES, DMLLoss, detached
from dml_core.losses.functional import class_cosines, class_mask, uniform_class_weights

COSINE_RANGES = {"official": (1e-10, 1.0 - 1e-10), "full": (-1.0 + 1e-7, 1.0 - 1e-7)}
"""ArcFace's clamp of the cosines before arccos, by ``cosine_range`` (see ``ArcFaceLoss``)."""


@LOSSES.register("arcface")
class ArcFaceLoss(DMLLoss):
    """L = CE(s · [cos θ with the target logit replaced by cos(θ_y + m)], y) (Deng et al. 2019).

    The additive angular margin m = 0.5 rad on the target logit only, s = 16, and the class weights
    at 50× the network's learning rate (``--loss_arcface_lr`` 5e-4 at ``--lr`` 1e-5) follow the
    official code of Roth et al. (2020), ``criteria/arcface.py``. ``cosine_range`` sets the clamp
    of the cosines before arccos:

    - ``"official"`` (default), the official code's [1e-10, 1 − 1e-10]: a negative cosine becomes
      1e-10 with no gradient, so a class weight more than 90° away from a sample neither pulls nor
      pushes it, and θ_y ≤ 90°, so θ_y + m < π;
    - ``"full"``, [−1 + 1e-7, 1 − 1e-7], the whole range.

    Where θ_y + m > π (only possible with ``"full"``) the target logit becomes cos θ_y − m sin m,
    so it keeps decreasing in θ (the ArcFace paper's reference implementation).
    """

    needs_num_classes = True
    needs_embed_dim = True
    without_miner_reason = "classifies against learned class weights"

    def __init__(
        self,
        *,
        margin: float = 0.5,
        scale: float = 16.0,
        class_lr_multiplier: float = 50.0,
        cosine_range: str = "official",
        **sizes: int | None,
    ) -> None:
        super().__init__(**sizes)
        assert self.num_classes is not None and self.embed_dim is not None
        if cosine_range not in COSINE_RANGES:
            raise ValueError(
                f"cosine_range must be one of {', '.join(COSINE_RANGES)}, got {cosine_range!r}"
            )
        self.margin = margin
        self.scale = scale
        self.cosine_range = cosine_range
        self.class_weights = uniform_class_weights(self.num_classes, self.embed_dim)
        self.param_lr_multiplier = class_lr_multiplier

    def compute_loss(self, x: Tensor, labels: Tensor, triplets: Tensor | None) -> Tensor:
        low, high = COSINE_RANGES[self.cosine_range]
        cosines = class_cosines(x, self.class_weights).clamp(low, high)
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
