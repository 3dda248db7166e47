"""The miner base class ``Miner``, the ``MINERS`` registry (``@MINERS.register("name")``) and the
shared triplet plumbing."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from dml_core.random_draws import DeviceGenerators
from dml_core.registry import Registry

MINERS = Registry("miner")


class Miner:
    """Base of every miner: ``miner(embeddings, labels) -> LongTensor[T, 3]`` on their device.

    Rows are (anchor, positive, negative) indices into the batch; what a row means per ``kind``:
    "triplet" one row per usable anchor; "npair" and "lifted" see those miners. Mining runs
    without gradients, in float32 with autocast off. ``stats`` holds 0-dim tensors of the last
    call (counts known from shapes stay on the CPU, so reading them never syncs the device).
    ``seed`` or ``generator`` make the random draws reproducible (see ``DeviceGenerators``).
    """

    name: ClassVar[str] = "miner"
    kind: ClassVar[str] = "triplet"

    def __init__(self, *, seed: int | None = None, generator: torch.Generator | None = None):
        self.generators = DeviceGenerators(seed, generator)
        self.stats: dict[str, Tensor] = {}

    def __call__(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
            raise ValueError(
                f"expected embeddings N×d and labels N, got {tuple(embeddings.shape)} and "
                f"{tuple(labels.shape)}"
            )
        self.stats = {}
        with torch.no_grad(), torch.autocast(device_type=embeddings.device.type, enabled=False):
            rows = self.mine(embeddings.detach().float(), labels)
        self.stats["num_tuples"] = torch.tensor(rows.shape[0])
        return rows

    def mine(self, x: Tensor, labels: Tensor) -> Tensor:
        """The T×3 rows for float32 embeddings ``x``; implemented by each miner."""
        raise NotImplementedError

    def generator(self, device: torch.device) -> torch.Generator | None:
        """The generator this miner draws with on ``device``."""
        return self.generators.for_device(device)


def stack_rows(positives: Tensor, negatives: Tensor, valid: Tensor) -> Tensor:
    """Rows (a, positives[a], negatives[a]) for the anchors a where ``valid`` holds.

    Selecting the valid anchors makes T data-dependent: this is the miner's one device sync.
    """
    anchors = torch.arange(positives.shape[0], device=positives.device)
    return torch.stack([anchors, positives, negatives], dim=1)[valid]


def miners_of_kind(kind: str) -> list[str]:
    """Names of the registered miners that give ``kind`` tuples, sorted."""
    return sorted(name for name, cls in MINERS.items() if cls.kind == kind)
