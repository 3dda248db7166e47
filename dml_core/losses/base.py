"""The loss base class ``DMLLoss`` and the ``LOSSES`` registry (``@LOSSES.register("name")``)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from dml_core.registry import Registry

LOSSES = Registry("loss")

OFFICIAL_NETWORK_LR = 1e-5
"""The network learning rate of the official code's defaults (``--lr``), to which its absolute
loss-parameter rates refer."""


class DMLLoss(nn.Module):
    """Base of every loss: ``forward(embeddings, labels, triplets=None) -> scalar``.

    Subclasses implement ``compute_loss`` on float32 (float64 stays float64) embeddings, with
    autocast disabled, so bf16/fp16 training still computes distances and exponentials in float32.
    ``miner_kind`` says which tuples the loss consumes ("triplet", "npair", "lifted"), or None when
    it uses all pairs, mines internally or is proxy-based; ``requires_miner`` follows from it
    (which miner and ρ fit which loss: ``dml_core.methods``). ``stats`` holds detached 0-dim
    tensors refreshed by each forward.
    An empty tuple set (the miner found no rows) gives ``zero_loss`` and ``empty_stats()`` here,
    so ``compute_loss`` of a tuple loss always sees at least one row.
    ``param_lr_multiplier`` is the learning rate of the loss's own parameters relative to the
    network's (None: it has none). The defaults are the official code's (Roth et al. 2020) absolute
    rates divided by its network rate ``OFFICIAL_NETWORK_LR`` = 1e-5: margin's β 5e-4 → 50×.
    ``use_miner`` tells the loss which miner feeds it (the official code adapts SNR to it).
    """

    name: ClassVar[str] = "loss"
    miner_kind: ClassVar[str | None] = None
    requires_miner: ClassVar[bool] = False
    needs_num_classes: ClassVar[bool] = False
    needs_embed_dim: ClassVar[bool] = False
    without_miner_reason: ClassVar[str] = "uses all pairs of the batch"
    param_lr_multiplier: float | None = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.requires_miner = cls.miner_kind is not None

    def __init__(self, *, num_classes: int | None = None, embed_dim: int | None = None) -> None:
        super().__init__()
        if self.needs_num_classes and num_classes is None:
            raise ValueError(f"loss {self.name!r} needs num_classes (the number of train classes)")
        if self.needs_embed_dim and embed_dim is None:
            raise ValueError(f"loss {self.name!r} needs embed_dim (the embedding size)")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.stats: dict[str, Tensor] = {}

    def forward(self, embeddings: Tensor, labels: Tensor, triplets: Tensor | None = None) -> Tensor:
        """The scalar loss of a batch; ``triplets`` are the miner's rows when the loss needs them."""
        if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
            raise ValueError(
                f"expected embeddings N×d and labels N, got {tuple(embeddings.shape)} and "
                f"{tuple(labels.shape)}"
            )
        if self.requires_miner and triplets is None:
            raise ValueError(f"loss {self.name!r} needs {self.miner_kind} tuples from a miner")
        if not self.requires_miner and triplets is not None:
            raise ValueError(f"loss {self.name!r} {self.without_miner_reason}; pass no triplets")
        if triplets is not None and (triplets.ndim != 2 or triplets.shape[1] != 3):
            raise ValueError(f"expected triplets of shape T×3, got {tuple(triplets.shape)}")
        compute_dtype = torch.promote_types(embeddings.dtype, torch.float32)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            x = embeddings.to(compute_dtype)
            if triplets is not None and triplets.shape[0] == 0:
                self.stats = self.empty_stats()
                return self.zero_loss(x)
            return self.compute_loss(x, labels, triplets)

    def compute_loss(self, x: Tensor, labels: Tensor, triplets: Tensor | None) -> Tensor:
        """The loss on full-precision embeddings ``x``; implemented by each loss."""
        raise NotImplementedError

    def use_miner(self, miner: str | None, rho: float = 0.0) -> None:
        """Adapt to the miner named ``miner`` (wrapped in ρ-regularization when ``rho`` > 0);
        the trainer calls this once. Most losses ignore it."""

    def empty_stats(self) -> dict[str, Tensor]:
        """``stats`` of a batch without tuples: the loss's own keys at their empty-batch values."""
        return {}

    def zero_loss(self, x: Tensor) -> Tensor:
        """0, connected to ``x`` and to every parameter of the loss, so ``backward`` gives each of
        them a zero gradient (not None: DDP and the optimizers see every parameter used)."""
        zero = connected_zero(x)
        for parameter in self.parameters():
            zero = zero + 0.0 * parameter.sum()
        return zero


def connected_zero(x: Tensor) -> Tensor:
    """A zero loss that stays connected to the graph (so ``backward`` works), never NaN."""
    return x.sum() * 0.0


def nonzero_mean(values: Tensor) -> Tensor:
    """Σ values / #(values > 0), and 0 when no value is positive (the official "mean over active")."""
    return values.sum() / (values > 0).sum().clamp_min(1)


def detached(value: Tensor) -> Tensor:
    """A stats entry: detached, 0-dim."""
    return value.detach().reshape(())
