"""Pure data helpers behind the Inspect, Compare and Train pages (no Streamlit calls here)."""

from __future__ import annotations

import base64
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from app.format import COUNT_METRICS, metric_order, metric_text
from app.nearest import (  # noqa: F401 (re-exported: the pages call them through analysis)
    NearestOther,
    nearest_other,
    nearest_other_from_report,
)
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
    embeddings: np.ndarray,
    labels: np.ndarray,
    ks: Sequence[int],
    keep_neighbors: int,
    is_query: np.ndarray | None = None,
    is_gallery: np.ndarray | None = None,
    *,
    scored: bool = True,
) -> tuple[dict[str, float], RetrievalReport]:
    """Retrieval metrics, embedding-space metrics and per-query detail of a split: leave-one-out,
    or queries against the gallery under ``is_query``/``is_gallery`` (the source's masks; the
    other items then have no neighbours and a NaN AP@R, so the per-query views skip them).
    ``scored=False``: the per-query detail alone (no k-means, no embedding-space metrics), for a
    source that stores its metrics; the returned metrics are then the retrieval ones only."""
    protocol = {"is_query": is_query, "is_gallery": is_gallery}
    if is_query is not None or is_gallery is not None:  # fewer items to retrieve: k ≤ available
        query = np.ones(len(labels), bool) if is_query is None else np.asarray(is_query)
        gallery = np.ones(len(labels), bool) if is_gallery is None else np.asarray(is_gallery)
        available = int(gallery.sum()) - int((query & gallery).any())
        ks = [k for k in ks if k <= available] or [1]
        keep_neighbors = max(0, min(keep_neighbors, available))
    report = retrieval_report(
        embeddings, labels, ks=tuple(ks), keep_neighbors=keep_neighbors, clustering=scored,
        **protocol,
    )  # fmt: skip
    if not scored:
        return dict(report.metrics), report
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


def random_queries(
    num_items: int, count: int, seed: int, among: np.ndarray | None = None
) -> list[int]:
    """``count`` distinct query indices drawn with a fixed seed, from ``among`` when given (the
    items that query under the query/gallery protocol), else from all ``num_items``."""
    rng = np.random.default_rng(seed)
    if among is None:
        return sorted(
            int(i) for i in rng.choice(num_items, size=min(count, num_items), replace=False)
        )
    pool = np.asarray(among)
    return sorted(int(i) for i in rng.choice(pool, size=min(count, len(pool)), replace=False))


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
                "class": class_name(class_names, int(label)),
                "items": int(density["class_sizes"][position]),
                "pi_intra": float(density["pi_intra"][position]),
                "nearest class": class_name(class_names, nearest),
                "distance to nearest class": float(density["nearest_class_distance"][position]),
            }
        )
    return rows


def display_names(names: Iterable[object]) -> list[str]:
    """Class names safe to show: bytes a folder name held that are not UTF-8 (kept by
    ``os.fsdecode`` as lone surrogates, which Streamlit cannot send) become "\ufffd"."""
    shown = []
    for name in names:
        text = str(name)
        try:
            raw = text.encode("utf-8", "surrogateescape")  # the folder name's original bytes
        except UnicodeEncodeError:  # a lone surrogate outside the escape range (e.g. from JSON)
            raw = text.encode("utf-8", "surrogatepass")
        shown.append(raw.decode("utf-8", "replace"))
    return shown


def class_name(class_names: Sequence[str], label: int) -> str:
    """The name of class ``label``; the number itself when ``class_names`` has no entry for it."""
    return class_names[label] if 0 <= label < len(class_names) else str(label)


# --- Inspect: queries, ranking, confusion, colouring ----------------------------------------

QUERY_SEPARATORS = re.compile(r"[\s,;]+")


def parse_query_indices(text: str, num_items: int) -> list[int]:
    """Item indices typed as whole numbers separated by commas and/or spaces.

    ``"5 7"`` and ``"5, 7"`` are the two queries 5 and 7. Every bad entry is named in one
    ``ValueError`` line (``'-1' is out of range (0 … 99)``, ``'abc' is not a whole number``);
    nothing is guessed. Repeats are kept once; the empty string gives no queries.
    """
    tokens = [token for token in QUERY_SEPARATORS.split(text.strip()) if token]
    indices: list[int] = []
    problems: list[str] = []
    for token in tokens:
        if not re.fullmatch(r"[+-]?\d+", token):
            problems.append(f"{token!r} is not a whole number")
            continue
        value = int(token)
        if not 0 <= value < num_items:
            problems.append(f"{token!r} is out of range (0 … {num_items - 1})")
        elif value not in indices:
            indices.append(value)
    if problems:
        raise ValueError("; ".join(problems))
    return indices


def worst_queries(
    average_precision: np.ndarray, count: int, gap: np.ndarray | None = None
) -> list[int]:
    """The ``count`` worst queries: lowest AP@R first; ties broken by the larger gap
    d⁺ − d⁻ (:meth:`app.nearest.NearestOther.gap`), then by index. Lone queries (NaN) are skipped."""
    values = np.asarray(average_precision, dtype=np.float64)
    valid = np.flatnonzero(np.isfinite(values))
    tie_break = np.zeros(len(values)) if gap is None else np.nan_to_num(-np.asarray(gap), nan=0.0)
    order = valid[np.lexsort((valid, tie_break[valid], values[valid]))]
    return [int(i) for i in order[:count]]


def hit_at_1(report: RetrievalReport, labels: np.ndarray) -> np.ndarray:
    """1.0 where a query's nearest other item shares its class, else 0.0; NaN for lone queries
    (excluded from Recall@1, as in :func:`dml_core.metrics.retrieval_report`)."""
    labels = np.asarray(labels)
    nearest = report.neighbor_indices[:, 0]
    hits = (labels[nearest] == labels).astype(np.float64)
    hits[np.isnan(report.average_precision_at_r)] = np.nan
    return hits


@dataclass(frozen=True)
class ConfusedPair:
    """Class ``retrieved`` among the top-k of queries of class ``query``: how often, the share of
    those queries' top-k slots, and one example (a query and the neighbour of the other class)."""

    query_class: int
    retrieved_class: int
    count: int
    share: float
    example_query: int
    example_neighbor: int


def confused_pairs(
    labels: np.ndarray, neighbor_indices: np.ndarray, k: int, top: int = 10
) -> list[ConfusedPair]:
    """The ``top`` (query class → retrieved class) pairs by how often an item of the second
    class is among the ``k`` nearest neighbours of a query of the first (ties: larger share,
    then class indices). Share = count / (queries of the class × k)."""
    labels = np.asarray(labels)
    neighbors = np.asarray(neighbor_indices)[:, :k]
    query_rows, columns = np.nonzero(neighbors >= 0)
    retrieved = neighbors[query_rows, columns]
    wrong = labels[retrieved] != labels[query_rows]
    query_rows, retrieved = query_rows[wrong], retrieved[wrong]
    if query_rows.size == 0:
        return []
    pairs = np.stack([labels[query_rows], labels[retrieved]], axis=1)
    unique, first, counts = np.unique(pairs, axis=0, return_index=True, return_counts=True)
    class_sizes = dict(zip(*np.unique(labels, return_counts=True), strict=True))
    shares = np.array([c / (class_sizes[q] * k) for (q, _), c in zip(unique, counts, strict=True)])
    order = np.lexsort((unique[:, 1], unique[:, 0], -shares, -counts))[:top]
    return [
        ConfusedPair(
            query_class=int(unique[i, 0]),
            retrieved_class=int(unique[i, 1]),
            count=int(counts[i]),
            share=float(shares[i]),
            example_query=int(query_rows[first[i]]),
            example_neighbor=int(retrieved[first[i]]),
        )
        for i in order
    ]


def _value_text(value: object) -> str:
    return metric_text(value) if isinstance(value, float) else str(value)


def best_result_rows(best: Mapping[str, object] | None) -> list[dict[str, object]]:
    """A checkpoint's ``best`` record (``{"metric", "value", "epoch"}``) as table rows; values as
    text (a column mixing names and numbers cannot be one Arrow column); a value the checkpoint
    does not record (None: imported checkpoints) reads "not recorded"."""
    if not best:
        return []
    names = {"metric": "selected on", "value": "best value", "epoch": "at epoch"}
    return [
        {
            "": names.get(key, key),
            "value": "not recorded" if value is None else _value_text(value),
        }
        for key, value in best.items()
    ]


def history_rows(history: Sequence[Mapping[str, float]]) -> list[dict[str, object]]:
    """The stored history transposed: one row per metric (headline metrics first), one column
    per evaluation (``epoch N``), so long metric names sit in rows, not in cut-off headers."""
    keys = [k for k in metric_order({k for e in history for k in e}) if k not in ("epoch", "step")]
    rows = []
    for key in keys:
        if key.rsplit("/", 1)[-1] in COUNT_METRICS:
            continue
        row: dict[str, object] = {"metric": key}
        for position, entry in enumerate(history):
            row[f"epoch {entry.get('epoch', position)}"] = entry.get(key)
        rows.append(row)
    return rows


# --- Compare: per-class Δ and disagreements ----------------------------------------------------


def per_class_delta(
    labels: np.ndarray,
    values_a: np.ndarray,
    values_b: np.ndarray,
    class_names: Sequence[str],
) -> list[dict[str, object]]:
    """Per class: the mean of a per-query value (hit@1 or AP@R; NaN queries skipped) under A and
    under B, and Δ = B − A; sorted by Δ, largest gain first (ties by class index)."""
    labels = np.asarray(labels)
    a = np.asarray(values_a, dtype=np.float64)
    b = np.asarray(values_b, dtype=np.float64)
    rows = []
    for label in np.unique(labels):
        members = (labels == label) & np.isfinite(a) & np.isfinite(b)
        if not members.any():
            continue
        mean_a, mean_b = float(a[members].mean()), float(b[members].mean())
        rows.append(
            {
                "class": class_name(class_names, int(label)),
                "label": int(label),
                "queries": int(members.sum()),
                "A": mean_a,
                "B": mean_b,
                "Δ (B − A)": mean_b - mean_a,
            }
        )
    return sorted(rows, key=lambda row: (-row["Δ (B − A)"], row["label"]))


def disagreements(hits_a: np.ndarray, hits_b: np.ndarray) -> tuple[list[int], list[int]]:
    """``(A right and B wrong, B right and A wrong)``: query indices by Recall@1 hit, ascending
    (queries that are lone under either, NaN, are in neither)."""
    a = np.asarray(hits_a, dtype=np.float64)
    b = np.asarray(hits_b, dtype=np.float64)
    only_a = np.flatnonzero((a == 1.0) & (b == 0.0))
    only_b = np.flatnonzero((b == 1.0) & (a == 0.0))
    return [int(i) for i in only_a], [int(i) for i in only_b]


def per_item_problem(
    signatures: Sequence[str], labels: Sequence[np.ndarray], names: Sequence[str]
) -> str | None:
    """None if every side embeds the same items (same dataset signature, same labels in the
    same order), else why per-item comparisons are off."""
    if len(set(signatures)) > 1:
        described = "; ".join(f"{n}: {s}" for n, s in zip(names, signatures, strict=True))
        return f"the datasets differ ({described})"
    first = np.asarray(labels[0])
    for name, other in zip(names[1:], labels[1:], strict=True):
        if not np.array_equal(first, np.asarray(other)):
            return f"{name} has other items than {names[0]} ({len(other)} vs {len(first)})"
    return None
