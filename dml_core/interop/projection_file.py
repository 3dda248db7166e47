"""Stored projections of an embedding file: ``<file>.projection.npz`` beside it (docs/DESIGN.md §6).

``python -m dml_core project FILE`` computes, for each split of an embedding file (``.npz``,
``.npy``, ``.parquet``, ``.csv``), the PCA and the interactive UMAP the app would fit, and stores
them in one sidecar next to the file, so Inspect and Compare draw them at once instead of fitting a
UMAP at every first open. The sidecar names the file's *content* (sha256 of its bytes and its size):
a file changed after ``project`` no longer matches and is projected by the app as before; a copied
or moved file keeps matching. Written atomically (``dml_core.io.atomic_save_npz``), never pickled.

Arrays: ``format`` (``dml-explorer-projection``), ``version`` (1), ``source_sha256``,
``source_bytes``, ``splits`` (names), ``umap_settings`` (JSON, ``""`` for PCA only), and per split
``<split>.pca`` / ``<split>.umap`` (N×2 float32; ``umap`` absent with ``--no-umap`` or below 10
items). A leave-one-out split (no query/gallery columns) also stores its evaluation, what the app
would otherwise compute at the first open (minutes at 60,000 items): ``<split>.metrics`` (JSON: the
retrieval and embedding-space metrics), ``<split>.ks`` (Recall@k's k), ``<split>.ap_at_r`` (N),
``<split>.neighbor_indices`` (N×k int32) and ``<split>.neighbor_distances`` (N×k float32).
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dml_core.engine.projection import INTERACTIVE, UmapSettings, pca_2d, umap_2d
from dml_core.interop.embeddings_file import EmbeddingSet, read_embeddings
from dml_core.io import atomic_save_npz, clean_stale_temp_files
from dml_core.metrics import RetrievalReport, embedding_space_metrics, retrieval_report
from dml_core.metrics.retrieval import DEFAULT_RECALL_KS

SIDECAR_SUFFIX = ".projection.npz"
FORMAT, VERSION = "dml-explorer-projection", 1
MIN_UMAP_ITEMS = 10
STORED_NEIGHBORS = 8
"""Neighbours kept per query (the app's retrieval grid shows up to 8)."""
_HASH_CHUNK = 1 << 22


@dataclass(frozen=True)
class FileProjection:
    """One split's stored layouts (N×2 float32; ``umap`` None when only PCA was stored) and, for
    a leave-one-out split, its stored evaluation (``metrics`` and ``report`` with the ``ks`` and
    neighbours it was computed with; None otherwise)."""

    pca: np.ndarray
    umap: np.ndarray | None
    ks: tuple[int, ...] | None = None
    report: RetrievalReport | None = None


def evaluation_arrays(part: EmbeddingSet, split: str) -> dict[str, np.ndarray]:
    """The stored evaluation of a leave-one-out split: Recall@k for the default k below N, the
    other retrieval and embedding-space metrics, per-query AP@R and the nearest neighbours."""
    count = len(part)
    ks = tuple(k for k in DEFAULT_RECALL_KS if k < count)
    report = retrieval_report(
        part.embeddings, part.labels, ks, keep_neighbors=min(STORED_NEIGHBORS, count - 1)
    )
    metrics = {**report.metrics, **embedding_space_metrics(part.embeddings, part.labels)}
    clean = {k: (float(v) if np.isfinite(v) else None) for k, v in metrics.items()}
    return {
        f"{split}.metrics": np.array(json.dumps(clean)),
        f"{split}.ks": np.array(ks, dtype=np.int64),
        f"{split}.ap_at_r": report.average_precision_at_r.astype(np.float64),
        f"{split}.neighbor_indices": report.neighbor_indices.astype(np.int32),
        f"{split}.neighbor_distances": report.neighbor_distances.astype(np.float32),
    }


def sidecar_path(path: str | Path) -> Path:
    """``<file>.projection.npz`` beside the embedding file."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def content_identity(path: str | Path) -> tuple[str, int]:
    """(sha256 hex of the file's bytes, its size): what a sidecar must name to match."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def store_file_projection(
    path: str | Path, umap: UmapSettings | None = INTERACTIVE
) -> dict[str, object]:
    """Project every split of the embedding file at ``path`` and write its sidecar; returns a
    one-line summary (items per split, whether UMAP was stored)."""
    path = Path(path)
    identity, size = content_identity(path)
    record = read_embeddings(path)
    arrays: dict[str, np.ndarray] = {}
    summary: dict[str, object] = {"file": str(path), "sidecar": str(sidecar_path(path))}
    splits = record.split_names()
    for split in splits:
        part = record.select_split(split)
        points = part.embeddings
        arrays[f"{split}.pca"] = pca_2d(points)
        if umap is not None and len(points) >= MIN_UMAP_ITEMS:
            arrays[f"{split}.umap"] = umap_2d(points, umap)
        if part.is_query is None and part.is_gallery is None and len(points) > 1:
            arrays.update(evaluation_arrays(part, split))
        summary[f"{split} items"] = len(points)
    if content_identity(path) != (identity, size):
        raise ValueError(f"{path} changed while it was projected; run project again")
    clean_stale_temp_files(sidecar_path(path))
    atomic_save_npz(
        sidecar_path(path),
        format=np.array(FORMAT),
        version=np.array(VERSION),
        source_sha256=np.array(identity),
        source_bytes=np.array(size),
        splits=np.array(splits),
        umap_settings=np.array(json.dumps(umap.to_dict()) if umap is not None else ""),
        **arrays,
    )
    summary["umap"] = any(key.endswith(".umap") for key in arrays)
    return summary


def read_file_projection(
    path: str | Path, split: str, items: int, identity: tuple[str, int] | None = None
) -> FileProjection | None:
    """The stored layouts of ``split`` (``items`` rows) when ``<file>.projection.npz`` exists and
    names this file's content; None otherwise (no sidecar, another file's or a changed file's,
    an unreadable one, or other row counts). ``identity`` skips hashing the file again."""
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return None
    try:
        with np.load(sidecar, allow_pickle=False) as stored:
            if str(stored["format"]) != FORMAT or int(stored["version"]) != VERSION:
                return None
            named = (str(stored["source_sha256"]), int(stored["source_bytes"]))
            if int(stored["source_bytes"]) != Path(path).stat().st_size:
                return None  # cheaper than hashing: a size change is a content change
            if named != (identity or content_identity(path)):
                return None
            pca = stored[f"{split}.pca"] if f"{split}.pca" in stored.files else None
            umap = stored[f"{split}.umap"] if f"{split}.umap" in stored.files else None
            ks, report = _stored_report(stored, split, items)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if pca is None or pca.shape != (items, 2):
        return None
    if umap is not None and umap.shape != (items, 2):
        umap = None
    finite = np.isfinite(pca).all() and (umap is None or np.isfinite(umap).all())
    if not finite:
        return None
    umap = None if umap is None else umap.astype(np.float32)
    return FileProjection(pca.astype(np.float32), umap, ks, report)


def _stored_report(
    stored: np.lib.npyio.NpzFile, split: str, items: int
) -> tuple[tuple[int, ...] | None, RetrievalReport | None]:
    """The split's stored evaluation when the sidecar holds a consistent one, else (None, None)."""
    names = [f"{split}.{name}" for name in ("metrics", "ks", "ap_at_r", "neighbor_indices")]
    if not all(name in stored.files for name in [*names, f"{split}.neighbor_distances"]):
        return None, None
    indices = stored[f"{split}.neighbor_indices"].astype(np.int64)
    distances = stored[f"{split}.neighbor_distances"].astype(np.float32)
    ap = stored[f"{split}.ap_at_r"].astype(np.float64)
    if ap.shape != (items,) or indices.shape != distances.shape or indices.shape[:1] != (items,):
        return None, None
    if indices.size and (indices.max() >= items or indices.min() < -1):
        return None, None
    metrics = {
        k: (math.nan if v is None else float(v))
        for k, v in json.loads(str(stored[f"{split}.metrics"])).items()
    }
    ks = tuple(int(k) for k in stored[f"{split}.ks"])
    return ks, RetrievalReport(metrics, ap, indices, distances)
