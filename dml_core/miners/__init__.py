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
from dml_core.miners.base import MINERS, Miner, miners_of_kind
from dml_core.miners.rho import RhoRegularizedMiner

__all__ = [
    "MINERS",
    "Miner",
    "RhoRegularizedMiner",
    "all_triplets",
    "build_miner",
    "distance",
    "lifted",
    "miners_of_kind",
    "npair",
    "random_triplets",
    "semihard",
    "softhard",
]


def build_miner(name: str, *, rho: float = 0.0, **hparams: Any) -> Miner:
    """The miner registered as ``name``; ``rho`` ≠ 0 wraps it in ρ-regularization, which checks
    ρ and the miner's kind (``RhoRegularizedMiner``)."""
    miner = MINERS.build(name, options=hparams)
    return miner if rho == 0 else RhoRegularizedMiner(miner, rho)
