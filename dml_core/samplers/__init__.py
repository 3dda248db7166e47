"""Batch samplers, registry ``SAMPLERS``: ``build_sampler(name, labels, batch_size, m, seed=…)``.

Each module holds one family; the contract (batches, determinism, class layout, embeddings,
resume) is in ``dml_core.samplers.base``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dml_core.samplers import batchmatch, class_random, coreset, uniform
from dml_core.samplers.base import SAMPLERS, BatchSampler, EmbeddingSampler, epoch_generator
from dml_core.samplers.batchmatch import (
    BatchMatchSampler,
    DistHistBatchMatchSampler,
    FidBatchMatchSampler,
)
from dml_core.samplers.class_random import ClassRandomSampler
from dml_core.samplers.coreset import CoresetSampler, D2CoresetSampler, GreedyCoresetSampler
from dml_core.samplers.uniform import RandomSampler

__all__ = [
    "SAMPLERS",
    "BatchMatchSampler",
    "BatchSampler",
    "ClassRandomSampler",
    "CoresetSampler",
    "D2CoresetSampler",
    "DistHistBatchMatchSampler",
    "EmbeddingSampler",
    "FidBatchMatchSampler",
    "GreedyCoresetSampler",
    "RandomSampler",
    "batchmatch",
    "build_sampler",
    "class_random",
    "coreset",
    "epoch_generator",
    "uniform",
]


def build_sampler(
    name: str,
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    batch_size: int,
    samples_per_class: int,
    *,
    seed: int = 0,
    **hparams: Any,
) -> BatchSampler:
    """The sampler registered as ``name``; unknown names or options raise ``ValueError``."""
    return SAMPLERS.build(name, labels, batch_size, samples_per_class, seed=seed, options=hparams)
