"""Pure data helpers behind the Inspect, Compare and Train pages (no Streamlit calls here)."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from dml_core.metrics import RetrievalReport, embedding_space_metrics, retrieval_report

RETRIEVAL_COLUMNS = 8
"""Neighbours kept per query for the retrieval grid."""


@dataclass(frozen=True)
class RetrievalRow:
    """A query and its nearest other items: dataset indices, distances, same-class flags."""

    query: int
    query_label: int
    neighbors: list[int]
    distances: list[float]
    hits: list[bool]


def analyse_split(
    embeddings: np.ndarray, labels: np.ndarray, ks: Sequence[int], keep_neighbors: int
) -> tuple[dict[str, float], RetrievalReport]:
    """Retrieval metrics (leave-one-out), embedding-space metrics and per-query detail of a split."""
    report = retrieval_report(embeddings, labels, ks=tuple(ks), keep_neighbors=keep_neighbors)
    metrics = {**report.metrics, **embedding_space_metrics(embeddings, labels)}
    return metrics, report


def retrieval_rows(
    report: RetrievalReport, labels: np.ndarray, queries: Sequence[int], k: int
) -> list[RetrievalRow]:
    """One row per query: its ``k`` nearest other items (by index, query excluded) and hits."""
    rows = []
    for query in queries:
        neighbors = [int(i) for i in report.neighbor_indices[query, :k] if i >= 0]
        rows.append(
            RetrievalRow(
                query=int(query),
                query_label=int(labels[query]),
                neighbors=neighbors,
                distances=[float(d) for d in report.neighbor_distances[query, : len(neighbors)]],
                hits=[bool(labels[i] == labels[query]) for i in neighbors],
            )
        )
    return rows


def worst_queries(average_precision: np.ndarray, count: int) -> list[int]:
    """Indices of the ``count`` queries with the lowest AP@R (lone queries, NaN, skipped)."""
    values = np.asarray(average_precision, dtype=np.float64)
    valid = np.flatnonzero(np.isfinite(values))
    order = valid[np.argsort(values[valid], kind="stable")]
    return [int(i) for i in order[:count]]


def random_queries(num_items: int, count: int, seed: int) -> list[int]:
    """``count`` distinct query indices drawn with a fixed seed."""
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(num_items, size=min(count, num_items), replace=False))


def metric_comparison(
    tables: dict[str, dict[str, float]], keys: Sequence[str] | None = None
) -> list[dict[str, object]]:
    """Rows ``{"metric", <name>: value…, "Δ <name>": value − first…}``, first table = reference."""
    names = list(tables)
    if keys is None:
        keys = sorted(set().union(*(table.keys() for table in tables.values())))
    rows: list[dict[str, object]] = []
    for key in keys:
        values = [tables[name].get(key, math.nan) for name in names]
        row: dict[str, object] = {"metric": key}
        row.update({name: value for name, value in zip(names, values, strict=True)})
        for name, value in zip(names[1:], values[1:], strict=True):
            row[f"Δ {name}"] = value - values[0]
        rows.append(row)
    return rows


def png_data_uri(image: Image.Image) -> str:
    """``data:image/png;base64,…`` for an inline <img>."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def density_table(density: dict[str, np.ndarray], class_names: Sequence[str]) -> list[dict]:
    """Per-class rows of :func:`dml_core.metrics.per_class_density` with readable class names."""
    rows = []
    for position, label in enumerate(density["class_labels"]):
        nearest = int(density["nearest_class"][position])
        rows.append(
            {
                "class": _name(class_names, int(label)),
                "items": int(density["class_sizes"][position]),
                "pi_intra": float(density["pi_intra"][position]),
                "nearest class": _name(class_names, nearest),
                "distance to nearest class": float(density["nearest_class_distance"][position]),
            }
        )
    return rows


def _name(class_names: Sequence[str], label: int) -> str:
    return class_names[label] if 0 <= label < len(class_names) else str(label)


def study_rows(study: dict, metrics: Sequence[str]) -> list[dict[str, object]]:
    """One row per mode of a :func:`toy.run_study` document: each metric as ``mean [low, high]``
    (the 95 % interval; the mean alone for a single seed)."""
    rows = []
    for mode, data in study["modes"].items():
        row: dict[str, object] = {"mode": mode}
        for metric in metrics:
            summary = data["summary"][metric]
            interval = summary.get("ci95")
            bounds = f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""
            row[metric] = f"{summary['mean']:.3f}{bounds}"
        rows.append(row)
    return rows
