"""The paper's class-random sampler: whole classes, ``samples_per_class`` items each."""

from __future__ import annotations

from typing import Any

import torch

from dml_core.samplers.base import SAMPLERS, BatchSampler


@SAMPLERS.register("class_random")
class ClassRandomSampler(BatchSampler):
    """The paper's sampler: each batch holds batch_size/m classes, m = samples_per_class items each.

    ``distinct_classes=True`` (default): no class twice in a batch (unless the batch needs more
    classes than the data has). The official code instead draws classes independently with
    replacement and items with replacement (``random.choice``); ``distinct_classes=False`` gives its
    class draw. Items: see ``class_random_batches`` (no item twice in a block when the class has at
    least m items; smaller classes repeat their items cyclically, i.e. sample with replacement).
    """

    def __init__(self, *args: Any, distinct_classes: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.distinct_classes = distinct_classes

    def draw_epoch(self, generator: torch.Generator) -> torch.Tensor:
        return self.class_random_batches(len(self), self.distinct_classes, generator)
