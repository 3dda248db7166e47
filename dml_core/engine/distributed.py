"""torchrun/DDP support: the process group, rank-local batches and the global-batch gather.

Each rank embeds its own contiguous slice of the sampler's global batch (the class sampler lays
batches out class by class, so a slice holds whole classes); embeddings and labels are then
all-gathered so the miner and the loss see the global batch. Only the local slice keeps its gradient,
so the loss is scaled by the world size before DDP averages the gradients: the result equals the
single-process gradient of the concatenated batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistContext:
        """Read torchrun's variables; start the process group (NCCL on CUDA, gloo on CPU) if needed."""
        world_size = int(os.environ.get("WORLD_SIZE", 1))
        if world_size == 1:
            return cls()
        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend=backend)
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))

    def wait_for_all(self) -> None:
        """Return once every rank has reached this call (a no-op in one process)."""
        if self.enabled and dist.is_initialized():
            dist.barrier()

    def shutdown(self) -> None:
        """Wait for every rank, then tear the process group down (a gloo group left alive at
        interpreter exit can abort the process)."""
        self.wait_for_all()
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    def local_slice(self, batch: list[int]) -> list[int]:
        """This rank's contiguous part of a global batch."""
        if not self.enabled:
            return batch
        size = len(batch) // self.world_size
        return batch[self.rank * size : (self.rank + 1) * size]


def gather_global_batch(
    embeddings: torch.Tensor, labels: torch.Tensor, context: DistContext
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate every rank's embeddings and labels in rank order; the local part keeps its grad."""
    if not context.enabled:
        return embeddings, labels
    embedding_parts = [torch.empty_like(embeddings) for _ in range(context.world_size)]
    label_parts = [torch.empty_like(labels) for _ in range(context.world_size)]
    dist.all_gather(embedding_parts, embeddings.detach().contiguous())
    dist.all_gather(label_parts, labels.contiguous())
    embedding_parts[context.rank] = embeddings
    return torch.cat(embedding_parts), torch.cat(label_parts)
