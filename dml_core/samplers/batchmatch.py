"""Batch-matching samplers: keep the candidate batch whose embedding statistics best match the
data's (distance histograms with a Wasserstein cost, or Gaussians with the Fréchet distance)."""

from __future__ import annotations

import math
from typing import Any

import torch

from dml_core.samplers.base import CHUNK_ELEMENTS, SAMPLERS, EmbeddingSampler


class BatchMatchSampler(EmbeddingSampler):
    """Batch matching: for each batch draw ``num_candidates`` class-random candidate batches and
    keep the one whose embedding statistics best match those of a random subsample of
    ``reference_size`` train items (drawn once per epoch). Subclasses define the statistic and
    the cost (``reference_statistics``, ``batch_costs``).
    """

    def __init__(
        self, *args: Any, num_candidates: int = 10, reference_size: int = 1024, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        if num_candidates < 1 or reference_size < 2 or self.batch_size < 2:
            raise ValueError(
                f"need num_candidates >= 1 (got {num_candidates}), reference_size >= 2 "
                f"(got {reference_size}) and batch_size >= 2 (got {self.batch_size})"
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
        rows_per_chunk = max(1, CHUNK_ELEMENTS // (flat.shape[1] * flat.shape[1]))
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

    def __init__(self, *args: Any, num_bins: int = 50, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
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
