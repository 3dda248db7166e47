"""Training batches on the device: dataset indices from the sampler → (inputs, labels) tensors.

Datasets that hold all their inputs in memory (the toy) are indexed directly; others go through one
``DataLoader`` for the whole run, so worker processes persist across epochs; each epoch hands it
that epoch's batches.
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

    def __call__(self, batches: list[list[int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
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
            )
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
