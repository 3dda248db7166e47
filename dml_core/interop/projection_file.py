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
items).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dml_core.engine.projection import INTERACTIVE, UmapSettings, pca_2d, umap_2d
from dml_core.interop.embeddings_file import read_embeddings
from dml_core.io import atomic_save_npz, clean_stale_temp_files

SIDECAR_SUFFIX = ".projection.npz"
FORMAT, VERSION = "dml-explorer-projection", 1
MIN_UMAP_ITEMS = 10
_HASH_CHUNK = 1 << 22


@dataclass(frozen=True)
class FileProjection:
    """One split's stored layouts (N×2 float32); ``umap`` None when only PCA was stored."""

    pca: np.ndarray
    umap: np.ndarray | None


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
        points = record.select_split(split).embeddings
        arrays[f"{split}.pca"] = pca_2d(points)
        if umap is not None and len(points) >= MIN_UMAP_ITEMS:
            arrays[f"{split}.umap"] = umap_2d(points, umap)
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
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if pca is None or pca.shape != (items, 2):
        return None
    if umap is not None and umap.shape != (items, 2):
        umap = None
    finite = np.isfinite(pca).all() and (umap is None or np.isfinite(umap).all())
    if not finite:
        return None
    return FileProjection(pca.astype(np.float32), None if umap is None else umap.astype(np.float32))
