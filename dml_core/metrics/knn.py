"""Leave-one-out k-nearest-neighbour search in Euclidean distance, in chunks of queries.

Every item queries all items; the query itself is removed **by index** (docs/DESIGN.md §3): we search
k + 1 neighbours and drop the column holding the query's own index, or the last column when the
query is not among them (exact duplicates and ties can push it out). Memory is O(chunk × k) per
step on top of the index; no N×N matrix is ever held. Under a query/gallery protocol
(``neighbor_chunks`` with ``queries`` and ``gallery``) the queries search the gallery items alone,
by the same rule: a query that is also a gallery item is left out of its own list.

Backends: ``"faiss"`` (exact ``IndexFlatL2`` on float32, CPU), ``"torch"`` (chunked matmul + topk
on the tensor's device) and ``"auto"`` (torch for CUDA tensors, faiss otherwise). ``approximate``
= ``"hnsw"`` or ``"ivf"`` swaps the exact faiss index for an approximate one, for millions of items.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import faiss
import numpy as np

from dml_core.metrics._inputs import ArrayLike, as_numpy, check_embeddings, is_tensor

if TYPE_CHECKING:
    import torch

KNN_BACKENDS = ("auto", "faiss", "torch")
APPROXIMATE_INDEXES = ("hnsw", "ivf")
DEFAULT_CHUNK_SIZE = 4096
# Largest (queries × items) block of distances the torch backend materialises at once (512 MiB).
TORCH_DISTANCE_BLOCK_ELEMENTS = 2**27

Search = Callable[["np.ndarray | torch.Tensor"], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class NeighborChunk:
    """Neighbours of the queries ``query_start … query_start + len(indices) − 1`` (positions in
    the sorted query list: item indices when every item queries).

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
    on_accelerator = is_tensor(embeddings) and embeddings.device.type != "cpu"
    return "torch" if on_accelerator else "faiss"


HNSW_NEIGHBORS = 32
"""HNSW's M (links per node); with efConstruction 40 and efSearch = max(64, 2k) Recall@1 and MAP@R
were within 0.005 of exact at 50k items and about 0.01 below at 100k (BENCHMARKS.md,
``bench/eval_bench.py --scale``)."""
HNSW_EF_CONSTRUCTION = 40
IVF_POINTS_PER_LIST = 64
"""IVF's coarse k-means trains on at most this many items per list (a fixed-seed sample)."""
IVF_PROBES = 64


def _faiss_index(points: np.ndarray, approximate: str | None, k: int) -> faiss.Index:
    num_items, dim = points.shape
    if approximate is None:
        index = faiss.IndexFlatL2(dim)
    elif approximate == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_NEIGHBORS)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = max(64, 2 * k)
    elif approximate == "ivf":
        num_lists = max(1, min(num_items // 39, int(4 * math.sqrt(num_items))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, num_lists)
        index.cp.seed = 0
        index.cp.max_points_per_centroid = IVF_POINTS_PER_LIST
        index.train(points)
        index.nprobe = min(num_lists, IVF_PROBES)
    else:
        valid = ", ".join(APPROXIMATE_INDEXES)
        raise ValueError(f"unknown approximate index {approximate!r}; valid names: {valid}")
    index.add(points)
    return index


def _faiss_search(gallery: np.ndarray | torch.Tensor, k: int, approximate: str | None) -> Search:
    points = np.ascontiguousarray(as_numpy(gallery), dtype=np.float32)
    index = _faiss_index(points, approximate, k)

    def search(queries: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        return index.search(np.ascontiguousarray(as_numpy(queries), dtype=np.float32), k)

    return search


def _torch_search(gallery: np.ndarray | torch.Tensor, k: int) -> Search:
    import torch

    points = torch.as_tensor(gallery, dtype=torch.float32)
    squared_norms = (points * points).sum(dim=1)
    width = min(k, points.shape[0])

    def search(queries: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        queries = torch.as_tensor(queries, dtype=torch.float32, device=points.device)
        squared = torch.addmm(squared_norms[None, :], queries, points.T, alpha=-2)
        squared.add_((queries * queries).sum(dim=1)[:, None]).clamp_min_(0)
        nearest = squared.topk(width, dim=1, largest=False, sorted=True)
        values, indices = nearest.values.cpu().numpy(), nearest.indices.cpu().numpy()
        if width < k:  # a gallery smaller than k + 1: missing columns as faiss gives them
            values = np.pad(values, ((0, 0), (0, k - width)), constant_values=np.inf)
            indices = np.pad(indices, ((0, 0), (0, k - width)), constant_values=-1)
        return values, indices

    return search


def _rows(points: np.ndarray | torch.Tensor, rows: np.ndarray | None) -> np.ndarray | torch.Tensor:
    if rows is None:
        return points
    if is_tensor(points):
        import torch

        return points[torch.as_tensor(rows, device=points.device)]
    return points[rows]


def checked_rows(rows: np.ndarray | None, num_items: int, name: str) -> np.ndarray | None:
    """Sorted unique item indices of ``queries``/``gallery`` (a boolean mask or indices)."""
    if rows is None:
        return None
    rows = np.asarray(rows)
    if rows.dtype == bool:
        if rows.shape != (num_items,):
            raise ValueError(f"{name} mask has shape {rows.shape}, expected ({num_items},)")
        rows = np.flatnonzero(rows)
    rows = np.unique(rows.astype(np.int64))
    if rows.size == 0:
        raise ValueError(f"no {name} items: the query/gallery protocol needs at least one")
    if rows[0] < 0 or rows[-1] >= num_items:
        raise ValueError(f"{name} indices must lie in [0, {num_items - 1}]")
    return rows


def neighbor_chunks(
    embeddings: ArrayLike,
    k: int,
    *,
    queries: np.ndarray | None = None,
    gallery: np.ndarray | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    backend: str = "auto",
    approximate: str | None = None,
) -> Iterator[NeighborChunk]:
    """The k nearest gallery items of every query (each query's own index left out),
    ``chunk_size`` queries at a time; ``queries``/``gallery``: masks or item indices (None: all
    items). Chunk rows follow the sorted queries; ``indices`` are item indices (−1: none)."""
    points = check_embeddings(embeddings)
    num_items = points.shape[0]
    query_rows = checked_rows(queries, num_items, "query")
    gallery_rows = checked_rows(gallery, num_items, "gallery")
    num_gallery = num_items if gallery_rows is None else len(gallery_rows)
    query_ids = np.arange(num_items) if query_rows is None else query_rows
    in_gallery = np.isin(query_ids, np.arange(num_items) if gallery_rows is None else gallery_rows)
    available = num_gallery - (1 if in_gallery.any() else 0)
    if not 1 <= k <= available:
        raise ValueError(
            f"k must be between 1 and the {available} gallery items a query can retrieve, got {k}"
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    gallery_points = _rows(points, gallery_rows)
    chosen = resolve_backend(points, backend)
    if approximate is not None or chosen == "faiss":
        search = _faiss_search(gallery_points, k + 1, approximate)
    else:
        search = _torch_search(gallery_points, k + 1)
        chunk_size = min(chunk_size, max(1, TORCH_DISTANCE_BLOCK_ELEMENTS // num_gallery))
    for start in range(0, len(query_ids), chunk_size):
        ids = query_ids[start : start + chunk_size]
        block = points[start : start + chunk_size] if query_rows is None else _rows(points, ids)
        squared, found = search(block)
        found = found.astype(np.int64)
        indices = found if gallery_rows is None else np.where(found >= 0, gallery_rows[found], -1)
        distances = np.sqrt(np.maximum(squared, 0)).astype(np.float32)
        distances[indices < 0] = np.inf
        kept_indices, kept_distances = drop_query_by_index(indices, distances, ids)
        yield NeighborChunk(start, kept_indices, kept_distances)


def leave_one_out_chunks(
    embeddings: ArrayLike,
    k: int,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    backend: str = "auto",
    approximate: str | None = None,
) -> Iterator[NeighborChunk]:
    """Yield the k nearest other items of every item, ``chunk_size`` queries at a time."""
    num_items = check_embeddings(embeddings).shape[0]
    if not 1 <= k < num_items:
        raise ValueError(f"k must be between 1 and N − 1 = {num_items - 1}, got {k}")
    return neighbor_chunks(
        embeddings, k, chunk_size=chunk_size, backend=backend, approximate=approximate
    )


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
