"""Training batches on the device: dataset indices from the sampler → (inputs, labels) tensors.

Datasets that hold all their inputs in memory (the toy) are indexed directly; others go through one
``DataLoader`` for the whole run, so worker processes persist across epochs; each epoch hands it
that epoch's batches.

Resume is bit-identical only if torch's global generator (which draws the augmentations when
``num_workers=0``) is consumed the same way as in an uninterrupted run. Creating a DataLoader
iterator draws a seed; the loader therefore draws from its own ``generator``, and ``__call__``
makes the one global draw itself where an uninterrupted run's loader made it (at the start of
every epoch without workers, of the run's first epoch with persistent workers), never again
after a resume in the middle of an epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from dml_core.engine.evaluation import in_memory_inputs


class TrainBatches:
    """``loader(batches)`` yields (inputs, labels) on ``device`` for each list of dataset indices."""

    def __init__(
        self, dataset: Any, device: torch.device, *, num_workers: int, channels_last: bool
    ) -> None:
        self.dataset = dataset
        self.device = device
        self.num_workers = num_workers
        self.channels_last = channels_last
        self.inputs = in_memory_inputs(dataset)
        self._epoch_batches = _EpochBatches()
        self._loader: DataLoader | None = None
        self.generator = torch.Generator()
        """The loader's own stream (its workers' base seed), saved with the train state."""

    def __call__(
        self, batches: list[list[int]], *, epoch: int, first_batch: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``first_batch, …`` of ``epoch`` (see the module docstring for the seed draw)."""
        if self.inputs is not None:
            labels_all = torch.as_tensor(self.dataset.labels)
            for batch in batches:
                index = torch.as_tensor(batch)
                yield (
                    self.inputs[index].to(self.device, non_blocking=True),
                    labels_all[index].to(self.device, non_blocking=True),
                )
            return
        if self._loader is None:
            self._loader = DataLoader(
                self.dataset,
                batch_sampler=self._epoch_batches,
                num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=self.num_workers > 0,
                generator=self.generator,
            )
        if first_batch == 0 and (self.num_workers == 0 or epoch == 0):
            self.generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
        self._epoch_batches.batches = batches
        for inputs, labels, _ in self._loader:
            inputs = inputs.to(self.device, non_blocking=True)
            if self.channels_last and inputs.dim() == 4:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            yield inputs, labels.to(self.device, non_blocking=True)


class _EpochBatches:
    """The current epoch's batches of dataset indices: the batch sampler of the run's one loader."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)
