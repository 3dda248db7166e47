"""Leave-one-out k-nearest-neighbour search in Euclidean distance, in chunks of queries.

Every item queries all items; the query itself is removed **by index** (docs/DESIGN.md §3): we search
k + 1 neighbours and drop the column holding the query's own index, or the last column when the
query is not among them (exact duplicates and ties can push it out). Memory is O(chunk × k) per
step on top of the index; no N×N matrix is ever held.

Backends: ``"faiss"`` (exact ``IndexFlatL2`` on float32, CPU), ``"torch"`` (chunked matmul + topk
on the tensor's device) and ``"auto"`` (torch for CUDA tensors, faiss otherwise). ``approximate``
= ``"hnsw"`` or ``"ivf"`` swaps the exact faiss index for an approximate one, for millions of items.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import faiss
import numpy as np
import torch

from dml_core.metrics._inputs import ArrayLike, as_numpy, check_embeddings

KNN_BACKENDS = ("auto", "faiss", "torch")
APPROXIMATE_INDEXES = ("hnsw", "ivf")
DEFAULT_CHUNK_SIZE = 4096
# Largest (queries × items) block of distances the torch backend materialises at once (512 MiB).
TORCH_DISTANCE_BLOCK_ELEMENTS = 2**27

SquaredSearch = Callable[[int, int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class NeighborChunk:
    """Neighbours of the queries ``query_start … query_start + len(indices) − 1``.

    ``indices`` (c, k) int64, nearest first, the query excluded (−1 where an approximate index
    found too few); ``distances`` (c, k) float32 Euclidean distances (inf where the index is −1).
    """

    query_start: int
    indices: np.ndarray
    distances: np.ndarray


def drop_query_by_index(
    indices: np.ndarray, distances: np.ndarray, query_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Keep k of (c, k+1) search columns: drop each row's own index, else its last column."""
    is_query = indices == query_ids[:, None]
    is_query[~is_query.any(axis=1), -1] = True
    keep = ~is_query
    rows, width = indices.shape
    return indices[keep].reshape(rows, width - 1), distances[keep].reshape(rows, width - 1)


def resolve_backend(embeddings: np.ndarray | torch.Tensor, backend: str) -> str:
    """``"auto"`` means torch for tensors on an accelerator and faiss for everything on the CPU."""
    if backend not in KNN_BACKENDS:
        raise ValueError(f"unknown kNN backend {backend!r}; valid names: {', '.join(KNN_BACKENDS)}")
    if backend != "auto":
        return backend
    on_accelerator = isinstance(embeddings, torch.Tensor) and embeddings.device.type != "cpu"
    return "torch" if on_accelerator else "faiss"


def _faiss_index(points: np.ndarray, approximate: str | None, k: int) -> faiss.Index:
    num_items, dim = points.shape
    if approximate is None:
        index = faiss.IndexFlatL2(dim)
    elif approximate == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = max(64, 2 * k)
    elif approximate == "ivf":
        num_lists = max(1, min(num_items // 39, int(4 * math.sqrt(num_items))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, num_lists)
        index.cp.seed = 0
        index.train(points)
        index.nprobe = min(num_lists, 16)
    else:
        valid = ", ".join(APPROXIMATE_INDEXES)
        raise ValueError(f"unknown approximate index {approximate!r}; valid names: {valid}")
    index.add(points)
    return index


def _faiss_search(
    embeddings: np.ndarray | torch.Tensor, k: int, approximate: str | None
) -> SquaredSearch:
    points = np.ascontiguousarray(as_numpy(embeddings), dtype=np.float32)
    index = _faiss_index(points, approximate, k)

    def search(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        return index.search(points[start:stop], k)

    return search


def _torch_search(embeddings: np.ndarray | torch.Tensor, k: int) -> SquaredSearch:
    points = torch.as_tensor(embeddings, dtype=torch.float32)
    squared_norms = (points * points).sum(dim=1)

    def search(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        queries = points[start:stop]
        squared = torch.addmm(squared_norms[None, :], queries, points.T, alpha=-2)
        squared.add_(squared_norms[start:stop, None]).clamp_min_(0)
        nearest = squared.topk(k, dim=1, largest=False, sorted=True)
        return nearest.values.cpu().numpy(), nearest.indices.cpu().numpy()

    return search


def leave_one_out_chunks(
    embeddings: ArrayLike,
    k: int,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    backend: str = "auto",
    approximate: str | None = None,
) -> Iterator[NeighborChunk]:
    """Yield the k nearest other items of every item, ``chunk_size`` queries at a time."""
    points = check_embeddings(embeddings)
    num_items = points.shape[0]
    if not 1 <= k < num_items:
        raise ValueError(f"k must be between 1 and N − 1 = {num_items - 1}, got {k}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    chosen = resolve_backend(points, backend)
    if approximate is not None or chosen == "faiss":
        search = _faiss_search(points, k + 1, approximate)
    else:
        search = _torch_search(points, k + 1)
        chunk_size = min(chunk_size, max(1, TORCH_DISTANCE_BLOCK_ELEMENTS // num_items))
    for start in range(0, num_items, chunk_size):
        stop = min(start + chunk_size, num_items)
        squared, indices = search(start, stop)
        distances = np.sqrt(np.maximum(squared, 0)).astype(np.float32)
        distances[indices < 0] = np.inf
        kept_indices, kept_distances = drop_query_by_index(
            indices.astype(np.int64), distances, np.arange(start, stop)
        )
        yield NeighborChunk(start, kept_indices, kept_distances)


def leave_one_out_neighbors(
    embeddings: ArrayLike,
    k: int,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    backend: str = "auto",
    approximate: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """All rows of :func:`leave_one_out_chunks`: indices (N, k) int64, distances (N, k) float32."""
    chunks = list(
        leave_one_out_chunks(
            embeddings, k, chunk_size=chunk_size, backend=backend, approximate=approximate
        )
    )
    return (
        np.concatenate([chunk.indices for chunk in chunks]),
        np.concatenate([chunk.distances for chunk in chunks]),
    )
