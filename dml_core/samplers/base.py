"""The batch-sampler contract, the ``SAMPLERS`` registry and the base classes.

Mini-batch samplers of Roth et al., ICML 2020, Sec. 4.2 and Appendix ("batch sampling").

Every sampler is a *batch sampler*: iterating it yields one epoch of batches, each a
``list[int]`` of exactly ``batch_size`` dataset indices, so it plugs into
``DataLoader(dataset, batch_sampler=...)``.
``len(sampler) == len(labels) // batch_size``; the remainder of the data is not visited that epoch.

Determinism: the randomness of an epoch is a function of ``(seed, epoch)`` only (``set_epoch``), so
every DDP rank builds the same global batch and a resumed run reproduces the same batches.
Iterating twice without ``set_epoch`` repeats the epoch (like ``DistributedSampler``).

Class layout (every sampler except ``random``): a batch is ``batch_size / samples_per_class``
blocks of ``samples_per_class`` items, each block from one class, and the blocks are ordered by
class label, so all items of one class are contiguous (A A B B C C ...). A DDP trainer can then cut
the global batch into per-rank contiguous chunks (a multiple of ``samples_per_class`` long) and
every rank receives whole classes. ``batch_size`` must be a multiple of ``samples_per_class``,
else ``ValueError``.

Embedding-based samplers (``needs_embeddings = True``) receive the current embeddings of all train
items through ONE method, ``update_embeddings(embeddings)`` (N×d, rows in the order of ``labels``),
which the trainer calls before each epoch. Before the first call they fall back to ``class_random``
batches.

Resume: ``state_dict()`` is ``{"epoch", "batch_in_epoch"}``, where ``batch_in_epoch`` counts the
batches this sampler has yielded in the current epoch. A DataLoader prefetches batches, so a trainer
should store the number of steps it actually completed there instead. After ``load_state_dict`` the
next iteration skips the first ``batch_in_epoch`` batches of that epoch; ``set_epoch`` with a
different epoch cancels the skip. Batches after a resume are identical for samplers that do not need
embeddings; embedding-based ones depend on the embeddings passed after the resume.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dml_core.registry import Registry

SAMPLERS = Registry("sampler")

CHUNK_ELEMENTS = 2**24
"""Working-set budget (elements) for chunked, vectorised per-epoch computations."""


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator whose stream depends only on ``(seed, epoch)`` (numpy SeedSequence)."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))


@dataclass(frozen=True)
class ClassTable:
    """Dataset indices grouped by class, shuffled inside each class for one epoch.

    ``items[start[c] : start[c] + count[c]]`` are the items of class ``c`` in a random order and
    ``position[i]`` is where item ``i`` sits inside its class's slice.
    """

    items: torch.Tensor
    start: torch.Tensor
    count: torch.Tensor
    position: torch.Tensor

    @classmethod
    def shuffled(
        cls, class_ids: torch.Tensor, num_classes: int, generator: torch.Generator
    ) -> ClassTable:
        shuffle = torch.randperm(len(class_ids), generator=generator)
        items = shuffle[torch.argsort(class_ids[shuffle], stable=True)]
        count = torch.bincount(class_ids, minlength=num_classes)
        start = torch.cumsum(count, 0) - count
        position = torch.empty_like(items)
        position[items] = torch.arange(len(items)) - start[class_ids[items]]
        return cls(items=items, start=start, count=count, position=position)

    def arc(self, classes: torch.Tensor, first: torch.Tensor, length: int) -> torch.Tensor:
        """Items ``first, first+1, ...`` (cyclically) of each class, shape (*classes.shape, length).

        Distinct items while ``length <= count``; smaller classes repeat items cyclically.
        """
        offsets = first.unsqueeze(-1) + torch.arange(length)
        count = self.count[classes].unsqueeze(-1)
        return self.items[self.start[classes].unsqueeze(-1) + offsets % count]


def occurrence_rank(values: torch.Tensor, num_values: int) -> torch.Tensor:
    """For a 1-D tensor, how many earlier entries hold the same value (0 for a first occurrence)."""
    order = torch.argsort(values, stable=True)
    counts = torch.bincount(values, minlength=num_values)
    group_start = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(values)
    rank[order] = torch.arange(len(values)) - group_start[values[order]]
    return rank


def draw_batch_classes(
    num_rows: int,
    classes_per_batch: int,
    num_classes: int,
    distinct: bool,
    generator: torch.Generator,
) -> torch.Tensor:
    """Classes of each batch, shape (num_rows, classes_per_batch), uniform over classes.

    ``distinct``: no class twice in a row, unless a batch needs more classes than exist; then the
    row walks through successive random permutations of all classes (counts differ by at most 1).
    Otherwise classes are drawn independently with replacement (the official code's behaviour).
    """
    if not distinct:
        return torch.randint(num_classes, (num_rows, classes_per_batch), generator=generator)
    repeats = math.ceil(classes_per_batch / num_classes)
    keys = torch.rand(num_rows, repeats, num_classes, generator=generator)
    return torch.argsort(keys, dim=-1).reshape(num_rows, -1)[:, :classes_per_batch]


class BatchSampler:
    """Base class: epoch bookkeeping, determinism and the class-contiguous layout.

    Subclasses implement ``draw_epoch(generator) -> LongTensor (len(self), batch_size)``. A
    subclass passes the base arguments on as ``*args, **kwargs`` and adds keyword-only options;
    ``SAMPLERS.build`` finds every option along that chain.
    """

    needs_embeddings: bool = False
    class_based: bool = True

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        batch_size: int,
        samples_per_class: int,
        *,
        seed: int = 0,
    ) -> None:
        labels_tensor = torch.as_tensor(np.asarray(labels)).long().reshape(-1).cpu()
        if batch_size < 1 or samples_per_class < 1:
            raise ValueError(
                f"batch_size ({batch_size}) and samples_per_class ({samples_per_class}) "
                "must be >= 1"
            )
        if self.class_based and batch_size % samples_per_class != 0:
            raise ValueError(
                f"batch_size ({batch_size}) must be a multiple of samples_per_class "
                f"({samples_per_class}): a batch is made of whole per-class blocks"
            )
        if len(labels_tensor) < batch_size:
            raise ValueError(
                f"the dataset has {len(labels_tensor)} items, fewer than batch_size ({batch_size})"
            )
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        unique_labels, class_ids = torch.unique(labels_tensor, return_inverse=True)
        self.labels = labels_tensor
        self.class_ids = class_ids
        self.num_classes = len(unique_labels)
        self.batch_size = batch_size
        self.samples_per_class = samples_per_class
        self.classes_per_batch = batch_size // samples_per_class
        self.seed = seed
        self.epoch = 0
        self._resume_batch = 0
        self._batches_yielded = 0

    def __len__(self) -> int:
        return len(self.labels) // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields."""
        if epoch != self.epoch:
            self._resume_batch = 0
            self._batches_yielded = 0
        self.epoch = epoch

    def update_embeddings(self, embeddings: torch.Tensor) -> None:
        """Current embeddings of all train items (N×d); ignored unless ``needs_embeddings``."""

    def epoch_batches(self) -> torch.Tensor:
        """All batches of the current epoch as a CPU LongTensor (len(self), batch_size)."""
        batches = self.draw_epoch(epoch_generator(self.seed, self.epoch))
        return batches.cpu()

    def draw_epoch(self, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def __iter__(self):
        batches = self.epoch_batches().tolist()
        start, self._resume_batch = self._resume_batch, 0
        self._batches_yielded = start
        for batch_index in range(start, len(batches)):
            self._batches_yielded = batch_index + 1
            yield batches[batch_index]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch_in_epoch": self._batches_yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        batch_in_epoch = int(state.get("batch_in_epoch", 0))
        if not 0 <= batch_in_epoch <= len(self):
            raise ValueError(f"batch_in_epoch must lie in [0, {len(self)}], got {batch_in_epoch}")
        self.epoch = int(state["epoch"])
        self._resume_batch = batch_in_epoch
        self._batches_yielded = batch_in_epoch

    def class_contiguous(self, batches: torch.Tensor) -> torch.Tensor:
        """Reorder the per-class blocks of each batch (B, batch_size) by class label."""
        blocks = batches.reshape(len(batches), self.classes_per_batch, self.samples_per_class)
        block_classes = self.class_ids.to(batches.device)[blocks[:, :, 0]]
        order = torch.argsort(block_classes, dim=1, stable=True)
        blocks = blocks.gather(1, order.unsqueeze(-1).expand_as(blocks))
        return blocks.reshape(len(batches), self.batch_size)

    def class_random_batches(
        self, num_batches: int, distinct_classes: bool, generator: torch.Generator
    ) -> torch.Tensor:
        """``num_batches`` class-random batches; each class is cycled through without replacement.

        The k-th block of class c in the epoch takes items ``k*m ... k*m+m-1`` (cyclically) of the
        class's shuffled list (m = samples_per_class), so a class's items are used evenly and no
        item repeats inside a block unless the class has fewer than m items.
        """
        classes = draw_batch_classes(
            num_batches, self.classes_per_batch, self.num_classes, distinct_classes, generator
        )
        table = ClassTable.shuffled(self.class_ids, self.num_classes, generator)
        flat_classes = classes.reshape(-1)
        rank = occurrence_rank(flat_classes, self.num_classes)
        items = table.arc(flat_classes, rank * self.samples_per_class, self.samples_per_class)
        return self.class_contiguous(items.reshape(num_batches, self.batch_size))


class EmbeddingSampler(BatchSampler):
    """Base for samplers that look at the current embeddings (``update_embeddings``)."""

    needs_embeddings = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.embeddings: torch.Tensor | None = None

    def update_embeddings(self, embeddings: torch.Tensor) -> None:
        """Store the current embeddings of all train items (N×d, rows in the order of ``labels``).

        Kept on their device (computations run there); half precision is promoted to float32.
        """
        if embeddings.ndim != 2 or len(embeddings) != len(self.labels):
            raise ValueError(
                f"expected embeddings of shape ({len(self.labels)}, d), "
                f"got {tuple(embeddings.shape)}"
            )
        embeddings = embeddings.detach()
        if embeddings.dtype not in (torch.float32, torch.float64):
            embeddings = embeddings.float()
        self.embeddings = embeddings

    def draw_epoch(self, generator: torch.Generator) -> torch.Tensor:
        if self.embeddings is None:
            return self.class_random_batches(len(self), True, generator)
        return self.draw_with_embeddings(generator)

    def draw_with_embeddings(self, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError
