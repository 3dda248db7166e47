"""2-D projections in the app: PCA at once, UMAP in a background thread, cached on disk.

The maths lives in ``dml_core.engine.projection`` (interactive UMAP settings: faiss kNN, PCA
initialisation, 200 epochs; docs/DESIGN.md §6). A checkpoint that carries its evaluation brings its
UMAP along; only checkpoints without one, snapshots, and Compare's aligned fits are computed here,
one job at a time in a background thread, and each result goes to the app's on-disk cache
(:mod:`app.cache`) under its key, so it is computed once. numba's kernels come from its disk cache
(``make`` fills it); :func:`start_warmup` loads them in the background once the first page is drawn.
``DML_EXPLORER_UMAP=off`` turns UMAP off (PCA only).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from app.cache import cache_key, read_arrays, write_arrays
from app.settings import umap_enabled
from dml_core.engine.projection import pca_2d, procrustes_align, umap_2d, warm_up

__all__ = [
    "background",
    "is_cached",
    "pca_2d",
    "procrustes_align",
    "projection_key",
    "read_arrays",
    "read_cached",
    "start_warmup",
    "umap_2d",
    "umap_projection",
    "wait_for_umap",
    "write_arrays",
    "write_cached",
]

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="umap")
_jobs: dict[str, Future] = {}
_jobs_lock = threading.Lock()
_warmup: Future[None] | None = None


def projection_key(source: str | Path, split: str, method: str) -> str:
    """The cache key of ``method`` (``umap``, ``embeddings``…) applied to ``split`` of a file."""
    return cache_key(source, split, method)


def read_cached(key: str) -> np.ndarray | None:
    """The cached projection under ``key``, or None."""
    return (read_arrays(key) or {}).get("coordinates")


def write_cached(key: str, coordinates: np.ndarray) -> None:
    write_arrays(key, coordinates=coordinates)


def is_cached(key: str) -> bool:
    """Whether a finished projection is on disk under ``key`` (jobs write it before they end)."""
    return read_cached(key) is not None


def start_warmup() -> Future[None] | None:
    """Load (or, without ``make``'s cache, compile) UMAP's numba kernels in the background thread,
    once per process; None when UMAP is off."""
    global _warmup
    if not umap_enabled():
        return None
    with _jobs_lock:
        if _warmup is None:
            _warmup = _executor.submit(warm_up)
        return _warmup


def background(key: str, compute: Callable[[], object]) -> object | None:
    """The result of ``compute`` run once in the background thread under ``key``: None while it
    runs (queued on the first call); a failed job raises here."""
    with _jobs_lock:
        job = _jobs.get(key)
        if job is None:
            job = _executor.submit(compute)
            _jobs[key] = job
    if not job.done():
        return None
    with _jobs_lock:
        _jobs.pop(key, None)
    return job.result()


def _umap_job(key: str, embeddings: np.ndarray, init: np.ndarray | None) -> np.ndarray:
    coordinates = umap_2d(embeddings, init=init)
    write_cached(key, coordinates)
    return coordinates


def umap_projection(
    key: str, embeddings: np.ndarray, init: np.ndarray | None = None
) -> np.ndarray | None:
    """The UMAP of ``embeddings`` (started from ``init`` when given) if cached or finished, else
    None after queueing it. With UMAP turned off, only an already cached projection is returned."""
    cached = read_cached(key)
    if cached is not None or not umap_enabled():
        return cached
    points = np.array(embeddings, dtype=np.float32, copy=True)
    start = None if init is None else np.array(init, dtype=np.float32, copy=True)
    return background(key, lambda: _umap_job(key, points, start))  # type: ignore[return-value]


def wait_for_umap(
    key: str, embeddings: np.ndarray, timeout: float | None = None, init: np.ndarray | None = None
) -> np.ndarray:
    """Block until the UMAP of ``embeddings`` is ready (benchmarks and tests)."""
    result = umap_projection(key, embeddings, init)
    if result is not None:
        return result
    with _jobs_lock:
        job = _jobs.get(key)
    if job is None:
        cached = read_cached(key)
        if cached is None:
            raise RuntimeError(f"the UMAP job {key} vanished without a result")
        return cached
    return job.result(timeout=timeout)
