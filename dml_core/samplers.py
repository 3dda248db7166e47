"""Mini-batch samplers (Roth et al., ICML 2020, Sec. 4.2 and Appendix: "batch sampling").

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

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dml_core.registry import Registry

SAMPLERS = Registry("sampler")

# Working-set budget (elements) for chunked, vectorised per-epoch computations.
_CHUNK_ELEMENTS = 2**24


def build_sampler(
    name: str,
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    batch_size: int,
    samples_per_class: int,
    *,
    seed: int = 0,
    **hparams: Any,
) -> BatchSampler:
    """Build the sampler registered as ``name``; unknown names or options raise ``ValueError``."""
    sampler_class = SAMPLERS[name]
    accepted = [
        parameter.name
        for parameter in inspect.signature(sampler_class.__init__).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.name != "seed"
    ]
    unknown = sorted(set(hparams) - set(accepted))
    if unknown:
        raise ValueError(
            f"sampler {name!r} got unknown option(s) {unknown}; it accepts {sorted(accepted)}"
        )
    return sampler_class(labels, batch_size, samples_per_class, seed=seed, **hparams)


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

    Subclasses implement ``draw_epoch(generator) -> LongTensor (len(self), batch_size)``.
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


@SAMPLERS.register("class_random")
class ClassRandomSampler(BatchSampler):
    """The paper's sampler: each batch holds batch_size/m classes, m = samples_per_class items each.

    ``distinct_classes=True`` (default): no class twice in a batch (unless the batch needs more
    classes than the data has). The official code instead draws classes independently with
    replacement and items with replacement (``random.choice``); ``distinct_classes=False`` gives its
    class draw. Items: see ``class_random_batches`` (no item twice in a block when the class has at
    least m items; smaller classes repeat their items cyclically, i.e. sample with replacement).
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        batch_size: int,
        samples_per_class: int,
        *,
        seed: int = 0,
        distinct_classes: bool = True,
    ) -> None:
        super().__init__(labels, batch_size, samples_per_class, seed=seed)
        self.distinct_classes = distinct_classes

    def draw_epoch(self, generator: torch.Generator) -> torch.Tensor:
        return self.class_random_batches(len(self), self.distinct_classes, generator)


@SAMPLERS.register("random")
class RandomSampler(BatchSampler):
    """Uniform sampling without replacement: one random permutation per epoch cut into batches.

    Not class-based: ``samples_per_class`` is ignored and batches have no class layout.
    """

    class_based = False

    def draw_epoch(self, generator: torch.Generator) -> torch.Tensor:
        permutation = torch.randperm(len(self.labels), generator=generator)
        return permutation[: len(self) * self.batch_size].reshape(len(self), self.batch_size)


class EmbeddingSampler(BatchSampler):
    """Base for samplers that look at the current embeddings (``update_embeddings``)."""

    needs_embeddings = True

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        batch_size: int,
        samples_per_class: int,
        *,
        seed: int = 0,
    ) -> None:
        super().__init__(labels, batch_size, samples_per_class, seed=seed)
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


class CoresetSampler(EmbeddingSampler):
    """Coreset batches: from a random pool of ``pool_multiplier × batch_size`` items, pick
    batch_size/m items spread over the embedding space (one per class where the pool allows), then
    complete each pick with m−1 random items of its class (m = samples_per_class; with m = 1 the
    whole batch is the coreset).

    This is the paper's description. The official code selects positions in one random pool but
    maps them to dataset indices through a different random draw, so its picks are not the coreset
    it computed; here pool positions map to the pool's own items.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        batch_size: int,
        samples_per_class: int,
        *,
        seed: int = 0,
        pool_multiplier: int = 4,
    ) -> None:
        super().__init__(labels, batch_size, samples_per_class, seed=seed)
        if pool_multiplier < 1:
            raise ValueError(f"pool_multiplier must be >= 1, got {pool_multiplier}")
        self.pool_multiplier = pool_multiplier
        self.pool_size = min(pool_multiplier * batch_size, len(self.labels))

    def choose_next(
        self, min_distance: torch.Tensor, eligible: torch.Tensor, uniform: torch.Tensor
    ) -> torch.Tensor:
        """Next pool position per row, given each item's distance to the picks so far."""
        raise NotImplementedError

    def select_from_pool(self, pool: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Pool positions of the coreset picks, shape (rows, batch_size/m), for pools (rows, P).

        The first pick is uniform; each next one comes from ``choose_next``. Items of an already
        picked class are skipped while the pool still holds unpicked classes.
        """
        if self.embeddings is None:
            raise RuntimeError("select_from_pool needs update_embeddings() first")
        device = self.embeddings.device
        rows, pool_size = pool.shape
        uniforms = torch.rand(rows, self.classes_per_batch, generator=generator).to(device)
        pool = pool.to(device)
        pool_embeddings = self.embeddings[pool]
        distances = torch.cdist(pool_embeddings, pool_embeddings)
        pool_classes = self.class_ids.to(device)[pool]
        row_index = torch.arange(rows, device=device)

        pick = (uniforms[:, 0] * pool_size).long().clamp(max=pool_size - 1)
        picks = [pick]
        min_distance = distances[row_index, pick]
        picked = torch.zeros(rows, pool_size, dtype=torch.bool, device=device)
        class_taken = torch.zeros_like(picked)
        for step in range(1, self.classes_per_batch):
            picked[row_index, pick] = True
            class_taken |= pool_classes == pool_classes[row_index, pick].unsqueeze(1)
            min_distance = torch.minimum(min_distance, distances[row_index, pick])
            min_distance = min_distance.masked_fill(picked, 0.0)
            new_class_left = (~class_taken).any(dim=1, keepdim=True)
            eligible = torch.where(new_class_left, ~class_taken, ~picked)
            pick = self.choose_next(min_distance, eligible, uniforms[:, step])
            picks.append(pick)
        return torch.stack(picks, dim=1)

    def draw_with_embeddings(self, generator: torch.Generator) -> torch.Tensor:
        rows_per_chunk = max(1, _CHUNK_ELEMENTS // max(self.pool_size**2, len(self.labels)))
        anchors = []
        for first_row in range(0, len(self), rows_per_chunk):
            rows = min(rows_per_chunk, len(self) - first_row)
            keys = torch.rand(rows, len(self.labels), generator=generator)
            pool = torch.topk(keys, self.pool_size, dim=1).indices
            positions = self.select_from_pool(pool, generator).cpu()
            anchors.append(pool.gather(1, positions))
        anchors = torch.cat(anchors)
        return self.class_contiguous(self.complete_blocks(anchors, generator))

    def complete_blocks(self, anchors: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Each anchor followed by m−1 random items of its class (others than the anchor if any)."""
        table = ClassTable.shuffled(self.class_ids, self.num_classes, generator)
        classes = self.class_ids[anchors].unsqueeze(-1)
        count = table.count[classes]
        others = (count - 1).clamp(min=1)
        start = (torch.rand(anchors.shape, generator=generator).unsqueeze(-1) * others).long()
        steps = (start + torch.arange(self.samples_per_class - 1)) % others
        offsets = (table.position[anchors].unsqueeze(-1) + 1 + steps) % count
        fill = table.items[table.start[classes] + offsets]
        blocks = torch.cat([anchors.unsqueeze(-1), fill], dim=-1)
        return blocks.reshape(len(anchors), self.batch_size)


@SAMPLERS.register("greedy_coreset")
class GreedyCoresetSampler(CoresetSampler):
    """Greedy k-center (farthest point, Gonzalez 1985): next = argmax_i min_{s∈S} ‖x_i − x_s‖."""

    def choose_next(
        self, min_distance: torch.Tensor, eligible: torch.Tensor, uniform: torch.Tensor
    ) -> torch.Tensor:
        return min_distance.masked_fill(~eligible, -1.0).argmax(dim=1)


@SAMPLERS.register("d2_coreset")
class D2CoresetSampler(CoresetSampler):
    """D² (k-means++, Arthur & Vassilvitskii 2007): P(next = i) ∝ min_{s∈S} ‖x_i − x_s‖²."""

    def choose_next(
        self, min_distance: torch.Tensor, eligible: torch.Tensor, uniform: torch.Tensor
    ) -> torch.Tensor:
        weights = (min_distance.double() ** 2).masked_fill(~eligible, 0.0)
        total = weights.sum(dim=1, keepdim=True)
        weights = torch.where(total > 0, weights, eligible.double())
        cumulative = torch.cumsum(weights, dim=1)
        target = uniform.double().unsqueeze(1) * cumulative[:, -1:]
        pick = torch.searchsorted(cumulative, target, right=True).squeeze(1)
        return pick.clamp(max=weights.shape[1] - 1)


class BatchMatchSampler(EmbeddingSampler):
    """Batch matching: for each batch draw ``num_candidates`` class-random candidate batches and
    keep the one whose embedding statistics best match those of a random subsample of
    ``reference_size`` train items (drawn once per epoch). Subclasses define the statistic and
    the cost (``reference_statistics``, ``batch_costs``).
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        batch_size: int,
        samples_per_class: int,
        *,
        seed: int = 0,
        num_candidates: int = 10,
        reference_size: int = 1024,
    ) -> None:
        super().__init__(labels, batch_size, samples_per_class, seed=seed)
        if num_candidates < 1 or reference_size < 2 or batch_size < 2:
            raise ValueError(
                f"need num_candidates >= 1 (got {num_candidates}), reference_size >= 2 "
                f"(got {reference_size}) and batch_size >= 2 (got {batch_size})"
            )
        self.num_candidates = num_candidates
        self.reference_size = min(reference_size, len(self.labels))

    def reference_statistics(self, reference: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def batch_costs(
        self, batches: torch.Tensor, statistics: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        """Cost of each batch of embeddings (M, batch_size, d) against the reference: (M,)."""
        raise NotImplementedError

    def candidate_costs(
        self, candidates: torch.Tensor, reference_indices: torch.Tensor
    ) -> torch.Tensor:
        """Costs of candidate batches (..., batch_size) of dataset indices; shape (...)."""
        if self.embeddings is None:
            raise RuntimeError("candidate_costs needs update_embeddings() first")
        device = self.embeddings.device
        statistics = self.reference_statistics(self.embeddings[reference_indices.to(device)])
        flat = candidates.reshape(-1, candidates.shape[-1]).to(device)
        rows_per_chunk = max(1, _CHUNK_ELEMENTS // (flat.shape[1] * flat.shape[1]))
        costs = [
            self.batch_costs(self.embeddings[flat[first : first + rows_per_chunk]], statistics)
            for first in range(0, len(flat), rows_per_chunk)
        ]
        return torch.cat(costs).reshape(candidates.shape[:-1])

    def select_best(
        self, candidates: torch.Tensor, reference_indices: torch.Tensor
    ) -> torch.Tensor:
        """The lowest-cost candidate of each row: (B, C, batch_size) → (B, batch_size)."""
        best = self.candidate_costs(candidates, reference_indices).argmin(dim=1).cpu()
        return candidates[torch.arange(len(candidates)), best]

    def draw_with_embeddings(self, generator: torch.Generator) -> torch.Tensor:
        reference_indices = torch.randperm(len(self.labels), generator=generator)
        reference_indices = reference_indices[: self.reference_size]
        candidates = self.class_random_batches(len(self) * self.num_candidates, True, generator)
        candidates = candidates.reshape(len(self), self.num_candidates, self.batch_size)
        return self.select_best(candidates, reference_indices)


@SAMPLERS.register("disthist_batchmatch")
class DistHistBatchMatchSampler(BatchMatchSampler):
    """Match the histogram of pairwise Euclidean distances inside the batch to the reference's.

    Both histograms use ``num_bins`` equal bins over [min, max] of the reference distances (batch
    distances outside are clamped into the end bins); the cost is the 1-D Wasserstein-1 distance
    between them, W₁(p, q) = Δ · Σ_k |Σ_{j≤k} (p_j − q_j)| with bin width Δ. The official code adds
    mean/std terms and feeds histogram heights to a sample-based Wasserstein routine; this follows
    the paper's description (distance-distribution matching) instead.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        batch_size: int,
        samples_per_class: int,
        *,
        seed: int = 0,
        num_candidates: int = 10,
        reference_size: int = 1024,
        num_bins: int = 50,
    ) -> None:
        super().__init__(
            labels,
            batch_size,
            samples_per_class,
            seed=seed,
            num_candidates=num_candidates,
            reference_size=reference_size,
        )
        if num_bins < 1:
            raise ValueError(f"num_bins must be >= 1, got {num_bins}")
        self.num_bins = num_bins

    def histogram(self, distances: torch.Tensor, low: torch.Tensor, width: torch.Tensor):
        """Normalised histograms of the rows of ``distances`` (M, T) → (M, num_bins)."""
        bins = ((distances - low) / width).floor().clamp(0, self.num_bins - 1).long()
        counts = torch.zeros(len(distances), self.num_bins, dtype=distances.dtype)
        counts = counts.to(distances.device).scatter_add_(1, bins, torch.ones_like(distances))
        return counts / distances.shape[1]

    def reference_statistics(self, reference: torch.Tensor) -> tuple[torch.Tensor, ...]:
        distances = torch.pdist(reference)
        low, high = distances.min(), distances.max()
        width = ((high - low) / self.num_bins).clamp(min=torch.finfo(distances.dtype).tiny)
        return low, width, self.histogram(distances.unsqueeze(0), low, width)

    def batch_costs(
        self, batches: torch.Tensor, statistics: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        low, width, reference_histogram = statistics
        upper = torch.triu_indices(self.batch_size, self.batch_size, 1, device=batches.device)
        distances = torch.cdist(batches, batches)[:, upper[0], upper[1]]
        difference = self.histogram(distances, low, width) - reference_histogram
        return width * torch.cumsum(difference, dim=1).abs().sum(dim=1)


@SAMPLERS.register("fid_batchmatch")
class FidBatchMatchSampler(BatchMatchSampler):
    """Match the Gaussian fitted to the batch's embeddings to the reference's (Fréchet distance):

    FD = ‖μ_r − μ_b‖² + tr Σ_r + tr Σ_b − 2 tr (Σ_r Σ_b)^{1/2},
    with tr (Σ_r Σ_b)^{1/2} = Σ √eig(Aᵀ A), A = (X_b − μ_b) Σ_r^{1/2} / √(n−1)
    (unbiased covariances).
    The official FID sampler is not reachable from its sampler selection; this builds the paper's
    description.
    """

    def reference_statistics(self, reference: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mean = reference.mean(dim=0)
        centred = reference - mean
        covariance = centred.T @ centred / (len(reference) - 1)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        sqrt_covariance = (eigenvectors * eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T
        return mean, sqrt_covariance, torch.diagonal(covariance).sum()

    def batch_costs(
        self, batches: torch.Tensor, statistics: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        reference_mean, sqrt_covariance, reference_trace = statistics
        batch_mean = batches.mean(dim=1)
        centred = batches - batch_mean.unsqueeze(1)
        scale = math.sqrt(batches.shape[1] - 1)
        batch_trace = centred.square().sum(dim=(1, 2)) / scale**2
        projected = centred @ sqrt_covariance / scale
        if projected.shape[1] <= projected.shape[2]:
            gram = projected @ projected.transpose(1, 2)
        else:
            gram = projected.transpose(1, 2) @ projected
        trace_sqrt = torch.linalg.eigvalsh(gram).clamp(min=0).sqrt().sum(dim=1)
        mean_term = (reference_mean - batch_mean).square().sum(dim=1)
        return mean_term + reference_trace + batch_trace - 2 * trace_sqrt
