"""Projections: PCA, Procrustes, the faiss kNN graph, aligned UMAP sequences, numba's disk cache."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dml_core.engine.projection import (
    aligned_pcas,
    aligned_umaps,
    knn_graph,
    pca_2d,
    procrustes_align,
    trustworthiness,
    umap_2d,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


def drifting_snapshots(steps: int = 4, items: int = 400, seed: int = 0) -> list[np.ndarray]:
    """Embeddings of the same items over 'epochs': 8 clusters in 32-D, each step a small drift."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, 32)) * 3
    labels = rng.integers(0, 8, items)
    points = centres[labels] + rng.normal(size=(items, 32))
    sequence = [points]
    for _ in range(steps):
        pull = 0.1 * (centres[(labels + 1) % 8] - centres[labels])
        points = points + 0.35 * rng.normal(size=points.shape) + pull
        sequence.append(points)
    return [x.astype(np.float32) for x in sequence]


def mean_moves(layouts: list[np.ndarray]) -> list[float]:
    """Mean distance an item moves between consecutive layouts, each centred and scaled to unit
    RMS radius (what a viewer sees when the plot rescales its axes)."""

    def standard(layout: np.ndarray) -> np.ndarray:
        centred = layout - layout.mean(axis=0)
        return centred / np.sqrt((centred**2).sum(axis=1).mean())

    return [
        float(np.linalg.norm(standard(a) - standard(b), axis=1).mean())
        for a, b in itertools.pairwise(layouts)
    ]


def test_pca_finds_the_two_widest_directions_with_fixed_signs() -> None:
    rng = np.random.default_rng(1)
    scales = np.array([5.0, 3.0, 0.1, 0.1])
    rotation, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    points = (rng.normal(size=(500, 4)) * scales) @ rotation.T + 7.0
    layout = pca_2d(points)
    assert layout.shape == (500, 2) and layout.dtype == np.float32
    np.testing.assert_allclose(layout.mean(axis=0), 0, atol=1e-4)
    spread = layout.std(axis=0)
    assert spread[0] == pytest.approx(5.0, rel=0.1) and spread[1] == pytest.approx(3.0, rel=0.1)
    # The same data with flipped signs gives the same picture (signs are fixed by the loadings).
    np.testing.assert_allclose(pca_2d(-points + 3), pca_2d(-points), atol=1e-4)
    with pytest.raises(ValueError, match="non-empty"):
        pca_2d(np.zeros((0, 3)))


def test_procrustes_undoes_a_rotation_and_reflection() -> None:
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(50, 2))
    angle = 1.1
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = (reference @ turn) * np.array([1, -1]) + 4.0
    np.testing.assert_allclose(procrustes_align(moved, reference), reference, atol=1e-5)
    with pytest.raises(ValueError, match="same items"):
        procrustes_align(moved[:10], reference)


def test_knn_graph_is_exact_with_each_item_first() -> None:
    rng = np.random.default_rng(3)
    points = rng.normal(size=(200, 6)).astype(np.float32)
    points[7] = points[3]  # an exact duplicate must not displace the item itself
    indices, distances = knn_graph(points, 5)
    assert (indices[:, 0] == np.arange(200)).all() and (distances[:, 0] == 0).all()
    unit = points / np.linalg.norm(points, axis=1, keepdims=True)
    cosine = 1 - unit @ unit.T
    np.fill_diagonal(cosine, -1)
    expected = np.sort(cosine, axis=1)[:, 1:5]
    np.testing.assert_allclose(np.sort(distances[:, 1:], axis=1), expected, atol=1e-5)
    assert 3 in indices[7] and 7 in indices[3]


def test_umap_of_clusters_keeps_neighbourhoods() -> None:
    points = drifting_snapshots(steps=0)[0]
    layout = umap_2d(points)
    assert layout.shape == (400, 2) and np.isfinite(layout).all()
    assert trustworthiness(points, layout) > trustworthiness(points, pca_2d(points))
    with pytest.raises(ValueError, match="init must be"):
        umap_2d(points, init=np.zeros((3, 2)))


def test_aligned_umap_moves_items_less_than_independent_fits() -> None:
    """The measured claim of issue 13: initialising each snapshot's UMAP from the previous layout
    moves the same item less between consecutive snapshots than fitting each one on its own."""
    sequence = drifting_snapshots()
    independent = mean_moves([umap_2d(points) for points in sequence])
    aligned = mean_moves(aligned_umaps(sequence))
    print(
        f"mean move per step: independent {np.mean(independent):.3f}, aligned {np.mean(aligned):.3f}"
    )
    assert np.mean(aligned) < np.mean(independent)
    pca_independent = mean_moves([pca_2d(points) for points in sequence])
    assert np.mean(mean_moves(aligned_pcas(sequence))) <= np.mean(pca_independent) + 1e-6


def test_aligned_umaps_reuse_a_known_first_layout() -> None:
    sequence = drifting_snapshots(steps=1, items=120)
    first = pca_2d(sequence[0])
    layouts = aligned_umaps(sequence, first=first)
    np.testing.assert_array_equal(layouts[0], first)
    assert layouts[1].shape == (120, 2)


@pytest.mark.slow
def test_warm_up_fills_numba_cache_dir(tmp_path: Path) -> None:
    """``make`` runs ``warm_up`` so a new process loads umap's kernels instead of compiling them."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    code = "from dml_core.engine.projection import warm_up; warm_up()"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=REPO_ROOT)
    cached = {path.name.split(".")[0] for path in tmp_path.rglob("*.nbi")}
    assert {"layouts", "umap_"} <= cached, sorted(cached)


def test_umap_leaves_torch_thread_count_as_it_was() -> None:
    """numba resizes the OpenMP pool torch shares; a changed count would change later same-seed
    training in the same process (the trainer projects at the end of every run)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        points = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
        umap_2d(points)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
