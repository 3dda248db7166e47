"""Reproducible random draws shared by the miners and the losses that sample (quadruplet)."""

from __future__ import annotations

import torch
from torch import Tensor


class DeviceGenerators:
    """One ``torch.Generator`` per device, seeded alike, so draws are reproducible anywhere.

    With neither ``seed`` nor ``generator`` the global torch RNG is used (``None`` is returned).
    A given ``generator`` is used as is; it must live on the device of the tensors drawn for.
    """

    def __init__(self, seed: int | None = None, generator: torch.Generator | None = None) -> None:
        if seed is not None and generator is not None:
            raise ValueError("pass either seed or generator, not both")
        self.seed = seed
        self.generator = generator
        self._per_device: dict[torch.device, torch.Generator] = {}

    def for_device(self, device: torch.device) -> torch.Generator | None:
        """The generator to draw with on ``device`` (created on first use when seeded)."""
        if self.generator is not None or self.seed is None:
            return self.generator
        if device not in self._per_device:
            generator = torch.Generator(device=device)
            generator.manual_seed(self.seed)
            self._per_device[device] = generator
        return self._per_device[device]


def sample_per_row(
    allowed: Tensor, log_weights: Tensor | None, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """Draw one column per row with P(j) ∝ exp(log_weights[i, j]) over ``allowed[i]`` (Gumbel-max).

    argmaxⱼ (log wᵢⱼ + Gᵢⱼ) with Gᵢⱼ = −log(−log Uᵢⱼ), U ~ U(0, 1), is an exact draw from the
    normalised weights (no row normalisation needed); ``log_weights=None`` draws uniformly.
    Returns (column, row_has_any_allowed); a row without allowed columns gets column 0 and False.
    """
    uniform = torch.rand(allowed.shape, device=allowed.device, generator=generator)
    scores = uniform.clamp_min_(torch.finfo(uniform.dtype).tiny).log_().neg_().log_().neg_()
    if log_weights is not None:
        scores = scores + log_weights
    scores = scores.masked_fill(~allowed, float("-inf"))
    return scores.argmax(dim=1), allowed.any(dim=1)
