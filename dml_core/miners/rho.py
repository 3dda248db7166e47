"""ρ-regularization (Roth et al. 2020, §5; docs/DESIGN.md §4) for any triplet miner."""

from __future__ import annotations

import torch
from torch import Tensor

from dml_core.miners.base import Miner, miners_of_kind


def check_push_probability(rho: float) -> float:
    """``rho`` when it is a probability, 0 ≤ ρ ≤ 1 (NaN is not); else a one-line ValueError.

    The one range check of ρ in the library: ``dml_core.methods`` asks it too."""
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must be a probability in [0, 1], got {rho}")
    return rho


class RhoRegularizedMiner(Miner):
    """Replace each row (a, p, n) of a triplet miner, independently with probability ρ, by the push
    triplet (a, a, p): the anchor is its own positive and a classmate takes the negative slot, so
    the loss pushes same-class samples apart and the embedding spectrum flattens.

    The official code does this inside its ``rho_distance`` miner (``--miner_rho_distance_cp``;
    ρ = 0.35–0.4 on CUB/CARS, 0.15 on SOP); here it wraps any triplet miner and draws with that
    miner's generator. ``stats["push_triplets"]`` counts the replaced rows of the last call. The
    wrapped miner must give triplets: the one check of that rule (``dml_core.methods`` matches
    losses to miners, and ρ to losses).
    """

    kind = "triplet"

    def __init__(self, base: Miner, rho: float) -> None:
        if base.kind != "triplet":
            raise ValueError(
                f"ρ-regularization needs a triplet miner ({', '.join(miners_of_kind('triplet'))}); "
                f"{base.name!r} gives {base.kind} tuples"
            )
        super().__init__()
        self.base = base
        self.rho = check_push_probability(rho)
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
