"""Triplet loss on mined (anchor, positive, negative) rows."""

from __future__ import annotations

import torch
from torch import Tensor

from dml_core.distances import tuple_distances
from dml_core.losses.base import LOSSES, DMLLoss, detached
from dml_core.losses.functional import triplet_violations, tuple_squared_distances

TRIPLET_DISTANCES = {"squared": tuple_squared_distances, "euclidean": tuple_distances}
"""The triplet loss's d by its ``distance`` option."""


@LOSSES.register("triplet")
class TripletLoss(DMLLoss):
    """L = mean_T [d(a,p) − d(a,n) + m]₊ (Schroff et al. 2015, FaceNet), m = 0.2.

    ``distance="squared"`` (default): d = ‖·‖², FaceNet's form and the official code of Roth et
    al. (2020), ``criteria/triplet.py``; ``"euclidean"``: d = ‖·‖. The margin 0.2
    (``--loss_triplet_margin``) and the plain mean over all rows follow the official code.
    """

    miner_kind = "triplet"

    def __init__(self, *, margin: float = 0.2, distance: str = "squared", **sizes: int | None):
        super().__init__(**sizes)
        if distance not in TRIPLET_DISTANCES:
            raise ValueError(
                f"distance must be one of {', '.join(TRIPLET_DISTANCES)}, got {distance!r}"
            )
        self.margin = margin
        self.distance = distance

    def empty_stats(self) -> dict[str, Tensor]:
        return {"active_fraction": torch.zeros(())}

    def compute_loss(self, x: Tensor, labels: Tensor, triplets: Tensor | None) -> Tensor:
        assert triplets is not None
        distance = TRIPLET_DISTANCES[self.distance]
        violations = triplet_violations(x, triplets, self.margin, distance=distance)
        self.stats = {"active_fraction": detached((violations > 0).float().mean())}
        return violations.mean()
