"""ρ-regularization (Roth et al. 2020, §5; docs/DESIGN.md §4) for any triplet miner."""

from __future__ import annotations

import torch
from torch import Tensor

from dml_core.miners.base import Miner


class RhoRegularizedMiner(Miner):
    """Replace each row (a, p, n) of a triplet miner, independently with probability ρ, by the push
    triplet (a, a, p): the anchor is its own positive and a classmate takes the negative slot, so
    the loss pushes same-class samples apart and the embedding spectrum flattens.

    The official code does this inside its ``rho_distance`` miner (``--miner_rho_distance_cp``;
    ρ = 0.35–0.4 on CUB/CARS, 0.15 on SOP); here it wraps any triplet miner and draws with that
    miner's generator. ``stats["push_triplets"]`` counts the replaced rows of the last call.
    """

    kind = "triplet"

    def __init__(self, base: Miner, rho: float) -> None:
        if base.kind != "triplet":
            raise ValueError(
                f"ρ-regularization needs a triplet miner; {base.name!r} gives {base.kind} tuples"
            )
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"rho must be a probability in [0, 1], got {rho}")
        super().__init__()
        self.base = base
        self.rho = rho
        self.name = base.name

    def generator(self, device: torch.device) -> torch.Generator | None:
        return self.base.generator(device)

    def mine(self, x: Tensor, labels: Tensor) -> Tensor:
        rows = self.base(x, labels)
        push = torch.rand(rows.shape[0], device=rows.device, generator=self.generator(x.device))
        push = push < self.rho
        push_rows = torch.stack([rows[:, 0], rows[:, 0], rows[:, 1]], dim=1)
        self.stats.update(self.base.stats)
        self.stats["push_triplets"] = push.sum()
        return torch.where(push[:, None], push_rows, rows)
