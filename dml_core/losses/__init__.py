"""Losses, registry ``LOSSES``: ``build_loss(name, num_classes=…, embed_dim=…, **hparams)``.

Each module holds one loss; ``functional`` holds their shared building blocks. Which miner (and ρ)
fits which loss: ``dml_core.methods``.
"""

from __future__ import annotations

from typing import Any

from dml_core.losses import (
    angular,
    arcface,
    contrastive,
    histogram,
    lifted,
    margin,
    multisimilarity,
    npair,
    proxy,
    quadruplet,
    snr,
    softmax,
    softtriple,
    triplet,
)
from dml_core.losses.base import LOSSES, DMLLoss

__all__ = [
    "LOSSES",
    "DMLLoss",
    "angular",
    "arcface",
    "build_loss",
    "contrastive",
    "histogram",
    "lifted",
    "margin",
    "multisimilarity",
    "npair",
    "proxy",
    "quadruplet",
    "snr",
    "softmax",
    "softtriple",
    "triplet",
]


def build_loss(
    name: str, *, num_classes: int | None = None, embed_dim: int | None = None, **hparams: Any
) -> DMLLoss:
    """The loss registered as ``name`` with the paper code's defaults overridden by ``hparams``."""
    return LOSSES.build(name, num_classes=num_classes, embed_dim=embed_dim, options=hparams)
