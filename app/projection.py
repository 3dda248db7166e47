"""2-D projections of embeddings: PCA at once, UMAP in a background thread, cached on disk.

The first UMAP in a fresh process pays for numba compilation (tens of seconds), so the app warms
UMAP up in a background thread when it starts (:func:`start_warmup`) and shows PCA until the UMAP
of the requested embedding is ready. Finished projections go to the app's on-disk cache
(:mod:`app.cache`) under :func:`projection_key`, so reopening a checkpoint is instant.
``DML_EXPLORER_UMAP=off`` turns UMAP off (PCA only), e.g. on a slow machine.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from app.cache import cache_key, read_arrays, write_arrays
from app.settings import umap_enabled

UMAP_NEIGHBORS = 15
UMAP_MIN_DIST = 0.1
UMAP_SEED = 0
WARMUP_POINTS = 256

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="umap")
_jobs: dict[str, Future[np.ndarray]] = {}
_jobs_lock = threading.Lock()
_warmup: Future[None] | None = None


def projection_key(source: str | Path, split: str, method: str) -> str:
    """The cache key of ``method`` (``umap``, ``embeddings``…) applied to ``split`` of a file."""
    return cache_key(source, split, method)


def pca_2d(embeddings: np.ndarray) -> np.ndarray:
    """First two principal components of the centred embeddings (N, 2), signs fixed.

    X_c = X − mean; X_c = U S Vᵀ; coordinates = X_c V[:, :2]. Each axis is flipped so that its
    largest-magnitude loading is positive, which makes the picture deterministic.
    """
    points = np.asarray(embeddings, dtype=np.float64)
    centred = points - points.mean(axis=0, keepdims=True)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    axes = components[:2].T
    if axes.shape[1] < 2:
        axes = np.pad(axes, ((0, 0), (0, 2 - axes.shape[1])))
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(2)])
    signs[signs == 0] = 1.0
    return (centred @ (axes * signs)).astype(np.float32)


def umap_2d(embeddings: np.ndarray, seed: int = UMAP_SEED) -> np.ndarray:
    """UMAP (McInnes et al. 2018) to 2-D with cosine distance, 15 neighbours, min_dist 0.1."""
    import umap

    points = np.asarray(embeddings, dtype=np.float32)
    neighbors = max(2, min(UMAP_NEIGHBORS, points.shape[0] - 1))
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=neighbors,
        min_dist=UMAP_MIN_DIST,
        metric="cosine",
        random_state=seed,
        n_jobs=1,
    )
    return reducer.fit_transform(points).astype(np.float32)


def read_cached(key: str) -> np.ndarray | None:
    """The cached projection under ``key``, or None."""
    return (read_arrays(key) or {}).get("coordinates")


def write_cached(key: str, coordinates: np.ndarray) -> None:
    write_arrays(key, coordinates=coordinates)


def _umap_job(key: str, embeddings: np.ndarray) -> np.ndarray:
    coordinates = umap_2d(embeddings)
    write_cached(key, coordinates)
    return coordinates


def _warm_up() -> None:
    points = np.random.default_rng(0).normal(size=(WARMUP_POINTS, 8)).astype(np.float32)
    umap_2d(points)


def start_warmup() -> Future[None] | None:
    """Compile UMAP's numba kernels in the background thread (once per process; None if off)."""
    global _warmup
    if not umap_enabled():
        return None
    with _jobs_lock:
        if _warmup is None:
            _warmup = _executor.submit(_warm_up)
        return _warmup


def umap_projection(key: str, embeddings: np.ndarray) -> np.ndarray | None:
    """The UMAP of ``embeddings`` if cached or finished, else None after queueing it.

    Jobs run one at a time in the background thread, after the warm-up; a failed job raises here.
    With UMAP turned off, only an already cached projection is returned.
    """
    cached = read_cached(key)
    if cached is not None or not umap_enabled():
        return cached
    with _jobs_lock:
        job = _jobs.get(key)
        if job is None:
            job = _executor.submit(_umap_job, key, np.array(embeddings, copy=True))
            _jobs[key] = job
    if not job.done():
        return None
    with _jobs_lock:
        _jobs.pop(key, None)
    return job.result()


def wait_for_umap(key: str, embeddings: np.ndarray, timeout: float | None = None) -> np.ndarray:
    """Block until the UMAP of ``embeddings`` is ready (benchmarks and tests)."""
    result = umap_projection(key, embeddings)
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
