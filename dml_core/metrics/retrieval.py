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
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np
from sklearn.metrics import normalized_mutual_info_score

from dml_core.metrics._inputs import ArrayLike, MetricInputs, as_numpy, check_inputs
from dml_core.metrics.knn import DEFAULT_CHUNK_SIZE, leave_one_out_chunks

DEFAULT_RECALL_KS = (1, 2, 4, 8)
KMEANS_ITERATIONS = 20
KMEANS_SEED = 0


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


def kmeans_clusters(
    embeddings: ArrayLike,
    num_clusters: int,
    *,
    iterations: int = KMEANS_ITERATIONS,
    seed: int = KMEANS_SEED,
) -> np.ndarray:
    """faiss k-means (Euclidean, fixed seed, no subsampling) → cluster id of every item (N,)."""
    points = np.ascontiguousarray(as_numpy(embeddings), dtype=np.float32)
    kmeans = faiss.Kmeans(
        points.shape[1],
        num_clusters,
        niter=iterations,
        seed=seed,
        min_points_per_centroid=1,
        max_points_per_centroid=points.shape[0],
        verbose=False,
    )
    kmeans.train(points)
    _, assignment = kmeans.index.search(points, 1)
    return assignment.reshape(-1).astype(np.int64)


def _pair_count(group_sizes: np.ndarray) -> float:
    """Σ C(n, 2) over groups: the number of unordered pairs inside the same group."""
    sizes = group_sizes.astype(np.float64)
    return float((sizes * (sizes - 1) / 2).sum())


def pair_counting_f1(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Pair-counting F1 of a clustering against labels, from the sparse contingency table.

    Over unordered item pairs: TP = Σ_cells C(n_cell, 2) (same class and same cluster),
    precision = TP / Σ_clusters C(n, 2), recall = TP / Σ_classes C(n, 2), F1 = 2PR / (P + R);
    0 when no pair is predicted or true. O(N log N) time, O(number of non-empty cells) memory.
    """
    _, label_index = np.unique(labels, return_inverse=True)
    _, cluster_index = np.unique(clusters, return_inverse=True)
    label_index, cluster_index = label_index.reshape(-1), cluster_index.reshape(-1)
    cell_codes = label_index.astype(np.int64) * (int(cluster_index.max()) + 1) + cluster_index
    true_positive = _pair_count(np.unique(cell_codes, return_counts=True)[1])
    same_cluster = _pair_count(np.bincount(cluster_index))
    same_class = _pair_count(np.bincount(label_index))
    if true_positive == 0:
        return 0.0
    precision, recall = true_positive / same_cluster, true_positive / same_class
    return 2 * precision * recall / (precision + recall)


def clustering_metrics(inputs: MetricInputs) -> dict[str, float]:
    """NMI and pair-counting F1 of k-means with K = number of classes (docs/DESIGN.md §3)."""
    clusters = kmeans_clusters(inputs.embeddings, inputs.num_classes)
    return {
        "nmi": float(normalized_mutual_info_score(inputs.class_index, clusters)),
        "f1": pair_counting_f1(inputs.class_index, clusters),
    }


def _checked_ks(ks: Sequence[int], num_items: int) -> tuple[int, ...]:
    checked = tuple(int(k) for k in ks)
    if not checked or any(k < 1 or k >= num_items for k in checked):
        raise ValueError(
            f"recall ks must be a non-empty list of integers in [1, N − 1 = {num_items - 1}], "
            f"got {list(ks)}"
        )
    return checked


def _ranked_list_length(inputs: MetricInputs, max_k: int | None) -> int:
    """Neighbours MAP@R and mAP_c need: the largest class size (R + 1), capped by ``max_k``."""
    largest_class = int(inputs.class_sizes.max())
    if max_k is None:
        return largest_class
    if max_k < 1:
        raise ValueError(f"max_k must be positive, got {max_k}")
    if largest_class > max_k:
        warnings.warn(
            f"the largest class has {largest_class} items but max_k={max_k}: MAP@R, R-Precision "
            f"and mAP_c rank only the first {max_k} neighbours (a lower bound for queries of "
            f"classes with more than {max_k} items)",
            stacklevel=4,
        )
    return min(largest_class, max_k)


def _evaluate(
    embeddings: ArrayLike,
    labels: ArrayLike,
    ks: Sequence[int],
    *,
    keep_neighbors: int | None,
    max_k: int | None,
    approximate: str | None,
    chunk_size: int,
    knn_backend: str,
) -> RetrievalReport:
    inputs = check_inputs(embeddings, labels)
    num_items = inputs.num_items
    recall_ks = _checked_ks(ks, num_items)
    if keep_neighbors is not None and not 0 <= keep_neighbors < num_items:
        raise ValueError(f"keep_neighbors must be in [0, N − 1 = {num_items - 1}]")
    ranked_length = _ranked_list_length(inputs, max_k)
    num_neighbors = max(*recall_ks, ranked_length, keep_neighbors or 0)
    if keep_neighbors is None:
        keep_neighbors = num_neighbors
    other_relevant = inputs.class_sizes[inputs.class_index] - 1
    lone = other_relevant == 0
    if lone.all():
        raise ValueError("every class has a single item: no query has a relevant neighbour")

    per_query = np.empty((3, num_items))
    first_hit_rank = np.empty(num_items, dtype=np.int64)
    neighbor_indices = np.empty((num_items, keep_neighbors), dtype=np.int64)
    neighbor_distances = np.empty((num_items, keep_neighbors), dtype=np.float32)
    for chunk in leave_one_out_chunks(
        inputs.embeddings,
        num_neighbors,
        chunk_size=chunk_size,
        backend=knn_backend,
        approximate=approximate,
    ):
        rows = slice(chunk.query_start, chunk.query_start + chunk.indices.shape[0])
        neighbor_class = np.where(chunk.indices >= 0, inputs.class_index[chunk.indices], -1)
        hits = neighbor_class == inputs.class_index[rows, None]
        per_query[:, rows] = query_statistics(hits[:, :ranked_length], other_relevant[rows])
        first_hit_rank[rows] = np.where(
            hits.any(axis=1), hits.argmax(axis=1) + 1, num_neighbors + 1
        )
        neighbor_indices[rows] = chunk.indices[:, :keep_neighbors]
        neighbor_distances[rows] = chunk.distances[:, :keep_neighbors]

    evaluated = ~lone
    metrics: dict[str, float] = {
        f"recall@{k}": float((first_hit_rank[evaluated] <= k).mean()) for k in recall_ks
    }
    average_precision_at_r, r_precision, average_precision_at_class_size = per_query
    metrics["map@r"] = float(average_precision_at_r[evaluated].mean())
    metrics["r_precision"] = float(r_precision[evaluated].mean())
    metrics["map_c"] = float(average_precision_at_class_size[evaluated].mean())
    metrics.update(clustering_metrics(inputs))
    metrics.update(
        num_items=num_items,
        num_classes=inputs.num_classes,
        num_lone_queries=int(lone.sum()),
        num_truncated_queries=int((inputs.class_sizes[inputs.class_index] > ranked_length).sum()),
        neighbors_searched=num_neighbors,
    )
    return RetrievalReport(metrics, average_precision_at_r, neighbor_indices, neighbor_distances)


def retrieval_metrics(
    embeddings: ArrayLike,
    labels: ArrayLike,
    ks: Sequence[int] = DEFAULT_RECALL_KS,
    *,
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

    >>> import numpy as np
    >>> points = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 0.0], [5.0, 1.0]])
    >>> retrieval_metrics(points, np.array([0, 0, 1, 1]), ks=(1,))["recall@1"]
    1.0
    """
    return _evaluate(
        embeddings,
        labels,
        ks,
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
    keep_neighbors: int | None = None,
    max_k: int | None = None,
    approximate: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    knn_backend: str = "auto",
) -> RetrievalReport:
    """:func:`retrieval_metrics` plus per-query AP@R and the neighbour lists, from one search.

    ``keep_neighbors`` columns of indices and distances are kept for every query (default: all
    that were searched); memory is O(N × keep_neighbors), so use it on evaluation-sized sets.
    """
    return _evaluate(
        embeddings,
        labels,
        ks,
        keep_neighbors=keep_neighbors,
        max_k=max_k,
        approximate=approximate,
        chunk_size=chunk_size,
        knn_backend=knn_backend,
    )
