"""The nearest same-class and other-class item of each query (worst-query ranking, "nearest wrong
class" colouring): exactly, in chunks, or read off a retrieval report's kept neighbours."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dml_core.metrics import RetrievalReport

__all__ = ["DISTANCE_CHUNK", "NearestOther", "nearest_other", "nearest_other_from_report"]

DISTANCE_CHUNK = 1024


@dataclass(frozen=True)
class NearestOther:
    """Per query, in Euclidean distance: the nearest other same-class item (``positive``) and
    the nearest other-class item (``negative``); NaN / −1 where there is none."""

    positive_distance: np.ndarray
    negative_distance: np.ndarray
    negative_index: np.ndarray

    @property
    def gap(self) -> np.ndarray:
        """d⁺ − d⁻: how much nearer the closest wrong item is than the closest right one
        (> 0: Recall@1 misses). NaN for lone queries."""
        return self.positive_distance - self.negative_distance


def nearest_other(
    embeddings: np.ndarray, labels: np.ndarray, queries: np.ndarray | None = None
) -> NearestOther:
    """Exact nearest positive and negative of every query (or of ``queries`` only; NaN / −1
    elsewhere), the query itself excluded, in chunks of queries: d²(a, b) = |a|² + |b|² − 2 a·b,
    never an N × N matrix."""
    points = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    count = len(labels)
    squared = (points**2).sum(axis=1)
    positive = np.full(count, np.nan)
    negative = np.full(count, np.nan)
    negative_index = np.full(count, -1, dtype=np.int64)
    asked = np.arange(count) if queries is None else np.asarray(queries, dtype=np.int64)
    for start in range(0, len(asked), DISTANCE_CHUNK):
        rows = asked[start : start + DISTANCE_CHUNK]
        distances = squared[rows, None] + squared[None, :] - 2.0 * points[rows] @ points.T
        distances = np.sqrt(np.maximum(distances, 0.0))
        same = labels[rows, None] == labels[None, :]
        distances[np.arange(len(rows)), rows] = np.inf  # the query itself
        with_positive = np.where(same, distances, np.inf)
        with_negative = np.where(same, np.inf, distances)
        best_positive = with_positive.min(axis=1)
        nearest_negative = with_negative.argmin(axis=1)
        best_negative = with_negative[np.arange(len(rows)), nearest_negative]
        positive[rows] = np.where(np.isfinite(best_positive), best_positive, np.nan)
        has_negative = np.isfinite(best_negative)
        negative[rows] = np.where(has_negative, best_negative, np.nan)
        negative_index[rows] = np.where(has_negative, nearest_negative, -1)
    return NearestOther(positive, negative, negative_index)


def nearest_other_from_report(
    report: RetrievalReport, embeddings: np.ndarray, labels: np.ndarray
) -> NearestOther:
    """:func:`nearest_other` of a leave-one-out split, read off the report's kept neighbours (the
    nearest other items, nearest first): the first same-class one is the nearest positive, the
    first other-class one the nearest negative. Only queries with neither among the kept
    neighbours are searched exactly, so a 60,000-item split costs milliseconds, not minutes."""
    labels = np.asarray(labels)
    indices, distances = report.neighbor_indices, report.neighbor_distances
    rows = np.arange(len(labels))
    found = indices >= 0
    same = found & (labels[np.where(found, indices, 0)] == labels[:, None])
    other = found & ~same
    has_positive, has_negative = same.any(axis=1), other.any(axis=1)
    first_positive, first_negative = same.argmax(axis=1), other.argmax(axis=1)
    positive = np.where(has_positive, distances[rows, first_positive], np.nan).astype(np.float64)
    negative = np.where(has_negative, distances[rows, first_negative], np.nan).astype(np.float64)
    negative_index = np.where(has_negative, indices[rows, first_negative], -1).astype(np.int64)
    _, inverse, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    class_size = sizes[inverse]
    missing = (~has_positive & (class_size > 1)) | (~has_negative & (class_size < len(labels)))
    if missing.any():
        exact = nearest_other(embeddings, labels, np.flatnonzero(missing))
        positive[missing] = exact.positive_distance[missing]
        negative[missing] = exact.negative_distance[missing]
        negative_index[missing] = exact.negative_index[missing]
    return NearestOther(positive, negative, negative_index)
