"""Zero-shot retrieval and clustering metrics: Recall@k, MAP@R, R-Precision, mAP_c, NMI, F1.

Definitions follow docs/DESIGN.md §3. Retrieval is leave-one-out in Euclidean distance: every item
queries all others, the query removed by index (see :mod:`dml_core.metrics.knn`). For a query of
class c with n_c items, R = n_c − 1 is the number of other same-class items, rel(i) ∈ {0, 1} says
whether the i-th neighbour shares the class and P(i) = (1/i)·Σ_{j≤i} rel(j):

- Recall@k = fraction of queries with rel(i) = 1 for some i ≤ k;
- MAP@R (Musgrave et al., 2020) = mean over queries of AP@R = (1/R)·Σ_{i≤R} P(i)·rel(i);
- R-Precision = mean over queries of (1/R)·Σ_{i≤R} rel(i);
- mAP_c (Roth et al., 2020, their "mAP") = mean over queries of (1/n_c)·Σ_{i≤n_c} P(i)·rel(i):
  cut-off and divisor are the class size *including* the query, so its maximum is (n_c − 1)/n_c.

A *lone query* (its class has one item) has no relevant item: it is excluded from all four
(as pytorch-metric-learning's AccuracyCalculator does by default) and counted in
``num_lone_queries``. Queries are processed in chunks, so memory is O(chunk × k) beyond the index.

Query/gallery protocol (open-metric-learning's ``is_query``/``is_gallery``): only queries are
scored, each ranking the gallery items; a query that is also a gallery item is left out of its own
list, so R = (gallery items of its class) − (1 if it is one of them). A query with R = 0 is a lone
query. NMI and F1 cluster the items that are a query, a gallery item or both.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dml_core.metrics._inputs import ArrayLike, MetricInputs, as_numpy, check_inputs, is_tensor
from dml_core.metrics.clustering import clustering_metrics
from dml_core.metrics.knn import DEFAULT_CHUNK_SIZE, neighbor_chunks

DEFAULT_RECALL_KS = (1, 2, 4, 8)
"""The k of Recall@k wherever a caller names none."""


@dataclass(frozen=True)
class RetrievalReport:
    """The metrics plus the per-query detail the app draws, all from one kNN search.

    ``average_precision_at_r`` (N,) is each query's AP@R (NaN for lone queries);
    ``neighbor_indices`` / ``neighbor_distances`` (N, k) are its nearest other items, nearest first.
    """

    metrics: dict[str, float]
    average_precision_at_r: np.ndarray
    neighbor_indices: np.ndarray
    neighbor_distances: np.ndarray


def query_statistics(
    hits: np.ndarray, other_relevant: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AP@R, R-Precision and AP at the class size (mAP_c's term) for a block of queries.

    ``hits`` (c, k) says whether each ranked neighbour shares the query's class; ``other_relevant``
    (c,) is R, the number of other same-class items. Neighbours beyond column k count as misses.
    Rows with R = 0 (lone queries) get NaN.
    """
    ranks = np.arange(1, hits.shape[1] + 1)
    precision_at_hits = np.where(hits, np.cumsum(hits, axis=1) / ranks, 0.0)
    within_r = ranks <= other_relevant[:, None]
    within_class_size = ranks <= other_relevant[:, None] + 1
    lone = other_relevant == 0
    divisor = np.where(lone, 1, other_relevant)
    average_precision_at_r = (precision_at_hits * within_r).sum(axis=1) / divisor
    r_precision = (hits & within_r).sum(axis=1) / divisor
    average_precision_at_class_size = (precision_at_hits * within_class_size).sum(axis=1) / (
        other_relevant + 1
    )
    for values in (average_precision_at_r, r_precision, average_precision_at_class_size):
        values[lone] = np.nan
    return average_precision_at_r, r_precision, average_precision_at_class_size


def _checked_ks(ks: Sequence[int], available: int) -> tuple[int, ...]:
    checked = tuple(int(k) for k in ks)
    if not checked or any(k < 1 or k > available for k in checked):
        raise ValueError(
            f"recall ks must be a non-empty list of integers in [1, {available}] (the items a "
            f"query can retrieve), got {list(ks)}"
        )
    return checked


def _ranked_list_length(longest: int, max_k: int | None) -> int:
    """Neighbours MAP@R and mAP_c need: the longest R + 1 of a query, capped by ``max_k``."""
    if max_k is None:
        return longest
    if max_k < 1:
        raise ValueError(f"max_k must be positive, got {max_k}")
    if longest > max_k:
        warnings.warn(
            f"the largest class has {longest} items but max_k={max_k}: MAP@R, R-Precision "
            f"and mAP_c rank only the first {max_k} neighbours (a lower bound for queries of "
            f"classes with more than {max_k} items)",
            stacklevel=4,
        )
    return min(longest, max_k)


@dataclass(frozen=True)
class Protocol:
    """Who queries and who is searched: every item both (leave-one-out) unless masks are given.

    ``query_rows``/``gallery_rows``: sorted item indices; ``relevant`` (queries,) is R, the gallery
    items of the query's class other than the query itself.
    """

    query_rows: np.ndarray
    gallery_rows: np.ndarray
    relevant: np.ndarray
    everyone: bool

    @property
    def available(self) -> int:
        """Gallery items every query can retrieve (one fewer when queries are in the gallery)."""
        in_gallery = np.isin(self.query_rows, self.gallery_rows)
        return len(self.gallery_rows) - (1 if in_gallery.any() else 0)


def _mask(values: ArrayLike | None, num_items: int, name: str) -> np.ndarray:
    if values is None:
        return np.ones(num_items, dtype=bool)
    mask = as_numpy(values)
    if mask.dtype != bool or mask.shape != (num_items,):
        raise ValueError(f"{name} must be a boolean mask of shape ({num_items},), got {mask.dtype}")
    return mask


def protocol_of(
    inputs: MetricInputs, is_query: ArrayLike | None, is_gallery: ArrayLike | None
) -> Protocol:
    """The query/gallery protocol of checked inputs; raises when a side is empty."""
    num_items = inputs.num_items
    query_mask = _mask(is_query, num_items, "is_query")
    gallery_mask = _mask(is_gallery, num_items, "is_gallery")
    if not query_mask.any() or not gallery_mask.any():
        raise ValueError(
            f"{int(query_mask.sum())} queries and {int(gallery_mask.sum())} gallery items: "
            "the query/gallery protocol needs at least one of each"
        )
    gallery_sizes = np.bincount(inputs.class_index[gallery_mask], minlength=inputs.num_classes)
    query_rows = np.flatnonzero(query_mask)
    relevant = gallery_sizes[inputs.class_index[query_rows]] - gallery_mask[query_rows]
    everyone = bool(query_mask.all() and gallery_mask.all())
    return Protocol(query_rows, np.flatnonzero(gallery_mask), relevant.astype(np.int64), everyone)


def _evaluate(
    embeddings: ArrayLike,
    labels: ArrayLike,
    ks: Sequence[int],
    *,
    is_query: ArrayLike | None = None,
    is_gallery: ArrayLike | None = None,
    keep_neighbors: int | None,
    max_k: int | None,
    approximate: str | None,
    chunk_size: int,
    knn_backend: str,
    clustering: bool = True,
) -> RetrievalReport:
    inputs = check_inputs(embeddings, labels)
    num_items = inputs.num_items
    protocol = protocol_of(inputs, is_query, is_gallery)
    available = protocol.available
    recall_ks = _checked_ks(ks, available)
    if keep_neighbors is not None and not 0 <= keep_neighbors <= available:
        raise ValueError(f"keep_neighbors must be in [0, {available}]")
    other_relevant = protocol.relevant
    ranked_length = _ranked_list_length(int(other_relevant.max()) + 1, max_k)
    num_neighbors = min(max(*recall_ks, ranked_length, keep_neighbors or 0), available)
    if keep_neighbors is None:
        keep_neighbors = num_neighbors
    lone = other_relevant == 0
    if lone.all():
        raise ValueError(
            "every class has a single item: no query has a relevant neighbour"
            if protocol.everyone
            else "no query has an item of its class in the gallery"
        )

    # Per item (NaN, −1 and inf on rows that do not query); per query position below.
    per_query = np.full((3, num_items), np.nan)
    first_hit_rank = np.empty(len(protocol.query_rows), dtype=np.int64)
    neighbor_indices = np.full((num_items, keep_neighbors), -1, dtype=np.int64)
    neighbor_distances = np.full((num_items, keep_neighbors), np.inf, dtype=np.float32)
    for chunk in neighbor_chunks(
        inputs.embeddings,
        num_neighbors,
        queries=None if protocol.everyone else protocol.query_rows,
        gallery=None if protocol.everyone else protocol.gallery_rows,
        chunk_size=chunk_size,
        backend=knn_backend,
        approximate=approximate,
    ):
        positions = slice(chunk.query_start, chunk.query_start + chunk.indices.shape[0])
        items = protocol.query_rows[positions]
        neighbor_class = np.where(chunk.indices >= 0, inputs.class_index[chunk.indices], -1)
        hits = neighbor_class == inputs.class_index[items, None]
        per_query[:, items] = query_statistics(hits[:, :ranked_length], other_relevant[positions])
        first_hit_rank[positions] = np.where(
            hits.any(axis=1), hits.argmax(axis=1) + 1, num_neighbors + 1
        )
        neighbor_indices[items] = chunk.indices[:, :keep_neighbors]
        neighbor_distances[items] = chunk.distances[:, :keep_neighbors]

    evaluated = ~lone
    metrics: dict[str, float] = {
        f"recall@{k}": float((first_hit_rank[evaluated] <= k).mean()) for k in recall_ks
    }
    average_precision_at_r, r_precision, average_precision_at_class_size = per_query
    scored = protocol.query_rows[evaluated]
    metrics["map@r"] = float(average_precision_at_r[scored].mean())
    metrics["r_precision"] = float(r_precision[scored].mean())
    metrics["map_c"] = float(average_precision_at_class_size[scored].mean())
    if clustering:
        metrics.update(clustering_metrics(_clustered(inputs, protocol), approximate=approximate))
    metrics.update(
        num_items=num_items,
        num_classes=inputs.num_classes,
        num_lone_queries=int(lone.sum()),
        num_truncated_queries=int((other_relevant + 1 > ranked_length).sum()),
        neighbors_searched=num_neighbors,
    )
    if not protocol.everyone:
        metrics.update(num_queries=len(protocol.query_rows), num_gallery=len(protocol.gallery_rows))
    return RetrievalReport(metrics, average_precision_at_r, neighbor_indices, neighbor_distances)


def _clustered(inputs: MetricInputs, protocol: Protocol) -> MetricInputs:
    """The items clustering is scored on: all of them, or the queries and gallery items."""
    if protocol.everyone:
        return inputs
    rows = np.union1d(protocol.query_rows, protocol.gallery_rows)
    if len(rows) == inputs.num_items:
        return inputs
    embeddings = inputs.embeddings
    if is_tensor(embeddings):
        import torch

        embeddings = embeddings[torch.as_tensor(rows, device=embeddings.device)]
    else:
        embeddings = embeddings[rows]
    return check_inputs(embeddings, inputs.class_labels[inputs.class_index[rows]])


def retrieval_metrics(
    embeddings: ArrayLike,
    labels: ArrayLike,
    ks: Sequence[int] = DEFAULT_RECALL_KS,
    *,
    is_query: ArrayLike | None = None,
    is_gallery: ArrayLike | None = None,
    max_k: int | None = None,
    approximate: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    knn_backend: str = "auto",
) -> dict[str, float]:
    """Leave-one-out retrieval and clustering metrics of embeddings (N, d) with labels (N,).

    Keys: ``recall@k`` for each k in ``ks``, ``map@r``, ``r_precision``, ``map_c``, ``nmi``, ``f1``
    (formulas in the module docstring and docs/DESIGN.md §3), and the counts ``num_items``,
    ``num_classes``, ``num_lone_queries`` (singleton classes, excluded from the retrieval means),
    ``num_truncated_queries`` (queries whose class has more than ``max_k`` items) and
    ``neighbors_searched`` (k of the kNN search). ``max_k`` caps the ranked list used for MAP@R,
    R-Precision and mAP_c (with a warning when it cuts a class); ``approximate`` = ``"hnsw"`` or
    ``"ivf"`` uses an approximate faiss index. Numpy arrays and torch tensors (any device) work.
    ``is_query``/``is_gallery`` (boolean masks, default all True): the query/gallery protocol
    (module docstring), which adds the counts ``num_queries`` and ``num_gallery``.

    >>> import numpy as np
    >>> points = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 0.0], [5.0, 1.0]])
    >>> retrieval_metrics(points, np.array([0, 0, 1, 1]), ks=(1,))["recall@1"]
    1.0
    """
    return _evaluate(
        embeddings,
        labels,
        ks,
        is_query=is_query,
        is_gallery=is_gallery,
        keep_neighbors=0,
        max_k=max_k,
        approximate=approximate,
        chunk_size=chunk_size,
        knn_backend=knn_backend,
    ).metrics


def retrieval_report(
    embeddings: ArrayLike,
    labels: ArrayLike,
    ks: Sequence[int] = DEFAULT_RECALL_KS,
    *,
    is_query: ArrayLike | None = None,
    is_gallery: ArrayLike | None = None,
    keep_neighbors: int | None = None,
    max_k: int | None = None,
    approximate: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    knn_backend: str = "auto",
    clustering: bool = True,
) -> RetrievalReport:
    """:func:`retrieval_metrics` plus per-query AP@R and the neighbour lists, from one search.

    ``keep_neighbors`` columns of indices and distances are kept for every query (default: all
    that were searched); memory is O(N × keep_neighbors), so use it on evaluation-sized sets.
    Under a query/gallery protocol, rows of items that do not query hold NaN, −1 and inf.
    ``clustering=False`` leaves out NMI and F1 (no k-means), for callers that have them stored.
    """
    return _evaluate(
        embeddings,
        labels,
        ks,
        is_query=is_query,
        is_gallery=is_gallery,
        keep_neighbors=keep_neighbors,
        max_k=max_k,
        approximate=approximate,
        chunk_size=chunk_size,
        knn_backend=knn_backend,
        clustering=clustering,
    )
