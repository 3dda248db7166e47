"""Uniform sampling without replacement, no class layout (the toy's published sampler)."""

from __future__ import annotations

import torch

from dml_core.samplers.base import SAMPLERS, BatchSampler


@SAMPLERS.register("random")
class RandomSampler(BatchSampler):
    """Uniform sampling without replacement: one random permutation per epoch cut into batches.

    Not class-based: ``samples_per_class`` is ignored and batches have no class layout.
    """

    class_based = False

    def draw_epoch(self, generator: torch.Generator) -> torch.Tensor:
        permutation = torch.randperm(len(self.labels), generator=generator)
        return permutation[: len(self) * self.batch_size].reshape(len(self), self.batch_size)
