"""Evaluation metrics (docs/DESIGN.md §3): retrieval, clustering and embedding-space properties."""

from dml_core.metrics.clustering import clustering_metrics, kmeans_clusters, pair_counting_f1
from dml_core.metrics.direction import LOWER_IS_BETTER, improves, lower_is_better
from dml_core.metrics.embedding_space import (
    embedding_space_metrics,
    per_class_density,
    singular_value_spectrum,
    spectral_decay,
    uniformity,
)
from dml_core.metrics.knn import leave_one_out_chunks, leave_one_out_neighbors
from dml_core.metrics.retrieval import (
    RetrievalReport,
    retrieval_metrics,
    retrieval_report,
)

__all__ = [
    "LOWER_IS_BETTER",
    "RetrievalReport",
    "clustering_metrics",
    "embedding_space_metrics",
    "improves",
    "kmeans_clusters",
    "leave_one_out_chunks",
    "leave_one_out_neighbors",
    "lower_is_better",
    "pair_counting_f1",
    "per_class_density",
    "retrieval_metrics",
    "retrieval_report",
    "singular_value_spectrum",
    "spectral_decay",
    "uniformity",
]
