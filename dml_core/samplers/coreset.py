"""Coreset samplers: batches spread over the embedding space (greedy k-center and D² draws)."""

from __future__ import annotations

from typing import Any

import torch

from dml_core.samplers.base import CHUNK_ELEMENTS, SAMPLERS, ClassTable, EmbeddingSampler


class CoresetSampler(EmbeddingSampler):
    """Coreset batches: from a random pool of ``pool_multiplier × batch_size`` items, pick
    batch_size/m items spread over the embedding space (one per class where the pool allows), then
    complete each pick with m−1 random items of its class (m = samples_per_class; with m = 1 the
    whole batch is the coreset).

    This is the paper's description. The official code selects positions in one random pool but
    maps them to dataset indices through a different random draw, so its picks are not the coreset
    it computed; here pool positions map to the pool's own items.
    """

    def __init__(self, *args: Any, pool_multiplier: int = 4, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if pool_multiplier < 1:
            raise ValueError(f"pool_multiplier must be >= 1, got {pool_multiplier}")
        self.pool_multiplier = pool_multiplier
        self.pool_size = min(pool_multiplier * self.batch_size, len(self.labels))

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
        rows_per_chunk = max(1, CHUNK_ELEMENTS // max(self.pool_size**2, len(self.labels)))
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
