"""Tuple miners, registry ``MINERS``: ``build_miner(name, rho=…, **hparams)``.

Triplet miners (random, semihard, softhard, distance) give one (a, p, n) row per usable anchor and
accept ρ-regularization; ``npair`` and ``lifted`` give the row sets their losses expect.
"""

from __future__ import annotations

from typing import Any

from dml_core.miners import (
    all_triplets,
    distance,
    lifted,
    npair,
    random_triplets,
    semihard,
    softhard,
)
from dml_core.miners.base import MINERS, Miner
from dml_core.miners.rho import RhoRegularizedMiner

__all__ = [
    "MINERS",
    "Miner",
    "RhoRegularizedMiner",
    "all_triplets",
    "build_miner",
    "distance",
    "lifted",
    "npair",
    "random_triplets",
    "semihard",
    "softhard",
]


def build_miner(name: str, *, rho: float = 0.0, **hparams: Any) -> Miner:
    """The miner registered as ``name``; ``rho > 0`` wraps a triplet miner in ρ-regularization."""
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must be a probability in [0, 1], got {rho}")
    kind = MINERS[name].kind
    if rho > 0 and kind != "triplet":
        triplet_miners = ", ".join(sorted(n for n, cls in MINERS.items() if cls.kind == "triplet"))
        raise ValueError(
            f"ρ-regularization needs a triplet miner ({triplet_miners}); "
            f"{name!r} gives {kind} tuples"
        )
    miner = MINERS.build(name, options=hparams)
    return RhoRegularizedMiner(miner, rho) if rho > 0 else miner
