"""2-D projections of embeddings: PCA at once, UMAP with interactive settings, aligned sequences.

PCA (docs/DESIGN.md §6) is the first two principal components of the centred embeddings. UMAP
(McInnes et al. 2018, umap-learn) runs with the *interactive* settings below: the 15-neighbour
cosine graph comes from an exact faiss search (``precomputed_knn``) instead of NN-descent, the
layout starts from PCA (or from a given layout) instead of the spectral embedding, and 200 epochs
instead of 500. On the shipped glyphs checkpoints this costs about a tenth of umap-learn's default
fit at a trustworthiness loss below 0.01 (``bench/app_bench.py``, BENCHMARKS.md).

Aligned sequences (snapshots over epochs, or checkpoints evaluated on the same items): each UMAP is
initialised from the previous layout, so the same item starts where it was and moves only as far as
its neighbourhood changed; PCA sequences are rotated/reflected onto the previous one (orthogonal
Procrustes). numba compiles umap's kernels on the first fit of a process; :func:`enable_numba_cache`
keeps them in numba's on-disk cache (``NUMBA_CACHE_DIR``, else ``__pycache__`` beside umap's sources)
so ``make`` compiles them once (:func:`warm_up`).
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np

UMAP_NEIGHBORS = 15
UMAP_MIN_DIST = 0.1
UMAP_SEED = 0
WARMUP_POINTS = 300


@dataclass(frozen=True)
class UmapSettings:
    """What a UMAP fit used; stored beside the coordinates it produced."""

    n_neighbors: int = UMAP_NEIGHBORS
    min_dist: float = UMAP_MIN_DIST
    metric: str = "cosine"
    n_epochs: int | None = 200
    """None = umap-learn's default (500 below 10,000 items)."""
    knn: str = "faiss"
    """``faiss`` (exact kNN graph) or ``nndescent`` (umap-learn's own)."""
    init: str = "pca"
    """``pca``, ``spectral``, or ``previous`` (an aligned fit started from a given layout)."""
    seed: int = UMAP_SEED

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


INTERACTIVE = UmapSettings()
UMAP_DEFAULTS = UmapSettings(n_epochs=None, knn="nndescent", init="spectral")
"""umap-learn's defaults (the quality reference)."""


def pca_2d(embeddings: np.ndarray) -> np.ndarray:
    """First two principal components of the centred embeddings (N, 2) float32, signs fixed.

    X_c = X − mean; X_c = U S Vᵀ; coordinates = X_c V[:, :2], from the d×d scatter matrix (O(N·d²)).
    Each axis is flipped so that its largest-magnitude loading is positive (deterministic picture).
    """
    points = np.asarray(embeddings, dtype=np.float64)
    if points.ndim != 2 or len(points) == 0:
        raise ValueError(f"PCA needs a non-empty (N, d) matrix, got shape {points.shape}")
    centred = points - points.mean(axis=0, keepdims=True)
    values, vectors = np.linalg.eigh(centred.T @ centred)
    axes = vectors[:, np.argsort(values)[::-1][:2]]
    if axes.shape[1] < 2:
        axes = np.pad(axes, ((0, 0), (0, 2 - axes.shape[1])))
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(2)])
    signs[signs == 0] = 1.0
    return (centred @ (axes * signs)).astype(np.float32)


def procrustes_align(layout: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``layout`` rotated/reflected (and translated) onto ``reference`` for the same items.

    Orthogonal Procrustes (Schönemann 1966): R = argmin ‖(A − ā)R − (B − b̄)‖_F over orthogonal R,
    R = U Vᵀ from the SVD of (A − ā)ᵀ(B − b̄); the result is (A − ā)R + b̄. Scale is kept.
    """
    layout = np.asarray(layout, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if layout.shape != reference.shape:
        raise ValueError(
            f"Procrustes needs layouts of the same items, got {layout.shape} and {reference.shape}"
        )
    a = layout - layout.mean(axis=0)
    b_mean = reference.mean(axis=0)
    u, _, vt = np.linalg.svd(a.T @ (reference - b_mean))
    return (a @ (u @ vt) + b_mean).astype(np.float32)


def knn_graph(
    embeddings: np.ndarray, n_neighbors: int = UMAP_NEIGHBORS, metric: str = "cosine"
) -> tuple[np.ndarray, np.ndarray]:
    """Exact kNN with faiss: ``(indices, distances)`` (N, k), each row starting with the item
    itself, as umap-learn's ``precomputed_knn`` expects. Cosine distance = 1 − cos; euclidean = ‖·‖."""
    import faiss

    points = np.ascontiguousarray(embeddings, dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(points, axis=1, keepdims=True)
        points = np.ascontiguousarray(points / np.maximum(norms, 1e-12))
        index = faiss.IndexFlatIP(points.shape[1])
    elif metric == "euclidean":
        index = faiss.IndexFlatL2(points.shape[1])
    else:
        raise ValueError(f"knn_graph: metric must be 'cosine' or 'euclidean', got {metric!r}")
    index.add(points)
    scores, indices = index.search(points, n_neighbors)
    cosine = metric == "cosine"
    distances = np.clip(1.0 - scores, 0.0, 2.0) if cosine else np.sqrt(np.maximum(scores, 0.0))
    # Put each item first (exact duplicates may tie with it), as umap-learn's own search does.
    rows = np.arange(len(points))
    self_position = np.argmax(indices == rows[:, None], axis=1)
    has_self = (indices == rows[:, None]).any(axis=1)
    for row in np.flatnonzero(~has_self | (self_position != 0)):
        others = [j for j in range(n_neighbors) if indices[row, j] != row][: n_neighbors - 1]
        indices[row] = [row, *indices[row, others]]
        distances[row] = [0.0, *distances[row, others]]
    distances[:, 0] = 0.0  # the item itself (1 − cos x·x is float noise)
    return indices.astype(np.int64), distances.astype(np.float32)


def enable_numba_cache() -> None:
    """Turn on numba's on-disk cache for umap-learn's module-level kernels (most are compiled
    without ``cache=True``), so a new process loads them instead of compiling again."""
    import numba

    for name in ("umap.umap_", "umap.layouts", "umap.utils", "umap.spectral", "umap.distances"):
        module = importlib.import_module(name)
        for value in vars(module).values():
            dispatcher = isinstance(value, numba.core.registry.CPUDispatcher)
            if dispatcher and type(value._cache).__name__ == "NullCache":
                try:
                    value.enable_caching()
                except Exception:  # a kernel numba cannot cache (closures) stays in memory
                    continue


def umap_2d(
    embeddings: np.ndarray,
    settings: UmapSettings = INTERACTIVE,
    init: np.ndarray | None = None,
) -> np.ndarray:
    """UMAP to 2-D (N, 2) float32 with ``settings``; ``init`` (N, 2) starts from a given layout."""
    import umap

    enable_numba_cache()
    points = np.ascontiguousarray(embeddings, dtype=np.float32)
    if points.ndim != 2 or len(points) < 3:
        raise ValueError(f"UMAP needs at least 3 items as an (N, d) matrix, got {points.shape}")
    neighbors = max(2, min(settings.n_neighbors, len(points) - 1))
    options: dict[str, object] = {}
    if settings.knn == "faiss":
        indices, distances = knn_graph(points, neighbors, settings.metric)
        options["precomputed_knn"] = (indices, distances, None)
    if init is not None:
        if init.shape != (len(points), 2):
            raise ValueError(f"UMAP init must be ({len(points)}, 2), got {init.shape}")
        start: object = np.asarray(init, dtype=np.float32)
    else:
        start = "spectral" if settings.init == "spectral" else "pca"
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=neighbors,
        min_dist=settings.min_dist,
        metric=settings.metric,
        n_epochs=settings.n_epochs,
        init=start,
        random_state=settings.seed,
        n_jobs=1,
        **options,
    )
    with warnings.catch_warnings(), torch_threads_kept():
        warnings.filterwarnings("ignore", message=".*precomputed_knn.*")
        warnings.filterwarnings("ignore", message=".*n_jobs.*")
        return reducer.fit_transform(points).astype(np.float32)


@contextmanager
def torch_threads_kept() -> Iterator[None]:
    """Put torch's thread count back afterwards: numba resizes the OpenMP pool torch shares, and a
    changed count changes the sums of later same-seed training steps."""
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        if torch is not None and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def aligned_umaps(
    sequence: Sequence[np.ndarray],
    settings: UmapSettings = INTERACTIVE,
    first: np.ndarray | None = None,
) -> list[np.ndarray]:
    """UMAPs of embeddings of the same items (snapshots, or checkpoints), each initialised from
    the previous layout; ``first`` is the layout of the first element when it is already known."""
    layouts: list[np.ndarray] = []
    previous = first
    for position, embeddings in enumerate(sequence):
        if position == 0 and first is not None:
            layout = np.asarray(first, dtype=np.float32)
        else:
            layout = umap_2d(embeddings, settings, init=previous)
        layouts.append(layout)
        previous = layout
    return layouts


def aligned_pcas(sequence: Sequence[np.ndarray]) -> list[np.ndarray]:
    """PCA of each element, each rotated/reflected onto the previous one (same items)."""
    layouts: list[np.ndarray] = []
    for embeddings in sequence:
        layout = pca_2d(embeddings)
        if layouts:
            layout = procrustes_align(layout, layouts[-1])
        layouts.append(layout)
    return layouts


def trustworthiness(embeddings: np.ndarray, layout: np.ndarray, n_neighbors: int = 15) -> float:
    """sklearn's trustworthiness (Venna & Kaski 2001) of ``layout`` in cosine distance."""
    from sklearn.manifold import trustworthiness as sklearn_trustworthiness

    return float(
        sklearn_trustworthiness(
            np.asarray(embeddings, dtype=np.float32),
            layout,
            n_neighbors=n_neighbors,
            metric="cosine",
        )
    )


def warm_up() -> None:
    """One tiny UMAP, so numba's on-disk cache holds every kernel an interactive fit uses."""
    rng = np.random.default_rng(0)
    points = rng.normal(size=(WARMUP_POINTS, 16)).astype(np.float32)
    layout = umap_2d(points)
    umap_2d(points, init=layout)
