"""The app's on-disk cache: named numpy arrays in ``<cache dir>/<key>.npz``.

A key is the sha256 of a source file's resolved path, its version (mtime in ns and size) and
what was computed from it (e.g. ``test`` + ``umap``), so a rewritten file never hits a stale
entry. Files are written atomically; an unreadable entry reads as a miss. The folder is
:func:`app.settings.cache_dir` (``DML_EXPLORER_PROJECTION_CACHE``).
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

from app.settings import cache_dir
from dml_core.io import atomic_save_npz


def file_version(path: str | Path) -> tuple[Path, int, int]:
    """``(resolved path, mtime in ns, size in bytes)``: what identifies one version of a file."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return resolved, stat.st_mtime_ns, stat.st_size


def cache_key(source: str | Path, *parts: str) -> str:
    """sha256 of the source's version (:func:`file_version`) and ``parts``."""
    path, mtime_ns, size = file_version(source)
    stamp = "|".join([str(path), str(mtime_ns), str(size), *parts])
    return hashlib.sha256(stamp.encode()).hexdigest()


def read_arrays(key: str) -> dict[str, np.ndarray] | None:
    """The arrays cached under ``key``, or None (also for an unreadable file)."""
    path = cache_dir() / f"{key}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def write_arrays(key: str, **arrays: np.ndarray) -> None:
    atomic_save_npz(cache_dir() / f"{key}.npz", **arrays)
