"""Spectrum, ρ, π and uniformity against hand-worked cases and direct N×N / full-SVD computations."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist

from dml_core.metrics import embedding_space as embedding_space_module
from dml_core.metrics import (
    embedding_space_metrics,
    per_class_density,
    singular_value_spectrum,
    spectral_decay,
    uniformity,
)


def test_hand_worked_spectrum_and_decay() -> None:
    # X = [[3, 0], [0, 4]] has singular values 4 and 3, so s̃ = (4/7, 3/7).
    spectrum = singular_value_spectrum(np.array([[3.0, 0.0], [0.0, 4.0]]))
    np.testing.assert_allclose(spectrum, [4 / 7, 3 / 7], atol=1e-12)
    # ρ@1 = ½·log(½ / (4/7)) + ½·log(½ / (3/7)) = ½·log(49/48); ρ@2 keeps one value: KL = 0.
    assert spectral_decay(spectrum, 1) == pytest.approx(0.5 * math.log(49 / 48), abs=1e-12)
    assert spectral_decay(spectrum, 2) == pytest.approx(0.0, abs=1e-12)
    assert spectral_decay(np.array([0.5, 0.5, 0.0]), 1) == math.inf


def test_hand_worked_density() -> None:
    # Class 0: (1,0) and (0,1) → cos 0 → intra 1. Class 1: (2,0) twice → cos 1 → intra 0.
    # π_intra = (1 + 0)/2 = ½. Normalised means (1,1)/√2 and (1,0): cos 1/√2 → π_inter = 1 − 1/√2.
    points = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [2.0, 0.0]])
    labels = np.array([0, 0, 1, 1])
    metrics = embedding_space_metrics(points, labels)
    assert metrics["pi_intra"] == pytest.approx(0.5, abs=1e-12)
    assert metrics["pi_inter"] == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-12)
    assert metrics["pi_ratio"] == pytest.approx(0.5 / (1 - 1 / math.sqrt(2)), abs=1e-12)
    density = per_class_density(points, labels)
    np.testing.assert_allclose(density["pi_intra"], [1.0, 0.0], atol=1e-12)
    np.testing.assert_array_equal(density["nearest_class"], [1, 0])
    np.testing.assert_allclose(density["nearest_class_distance"], 1 - 1 / math.sqrt(2))


def test_hand_worked_uniformity() -> None:
    # Points 0, 1, 2 on a line: squared distances 1, 4, 1 → log((2·e^−2 + e^−8) / 3).
    expected = math.log((2 * math.exp(-2) + math.exp(-8)) / 3)
    assert uniformity(np.array([[0.0], [1.0], [2.0]])) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("shape", [(300, 16), (5, 16), (64, 64)])
def test_spectrum_matches_full_svd(shape: tuple[int, int]) -> None:
    points = np.random.default_rng(0).normal(size=shape) + 0.3
    singular_values = np.linalg.svd(points, compute_uv=False)
    spectrum = singular_value_spectrum(points)
    assert spectrum.shape == (min(shape),)
    np.testing.assert_allclose(spectrum, singular_values / singular_values.sum(), atol=1e-6)
    assert np.all(np.diff(spectrum) <= 0)


def test_spectral_decay_matches_explicit_kl() -> None:
    spectrum = singular_value_spectrum(np.random.default_rng(1).normal(size=(200, 12)))
    for k in (1, 2, 5):
        tail = spectrum[k - 1 :] / spectrum[k - 1 :].sum()
        expected = sum((1 / len(tail)) * math.log((1 / len(tail)) / value) for value in tail)
        assert spectral_decay(spectrum, k) == pytest.approx(expected, abs=1e-12)
    flat = singular_value_spectrum(np.eye(8))
    assert spectral_decay(flat, 1) == pytest.approx(0.0, abs=1e-12)
    assert spectral_decay(spectrum, 1) > 0


def clustered_points(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 25, size=400)
    labels[:3] = [90, 91, 92]  # singleton classes, skipped by π_intra
    points = rng.normal(size=(100, 10))[labels] + 0.7 * rng.normal(size=(400, 10))
    points[10] = points[11] = points[12]  # exact duplicates
    return points, labels


def direct_density(points: np.ndarray, labels: np.ndarray) -> tuple[dict[int, float], float]:
    """Per-class π_intra and π_inter from full cosine matrices and explicit loops over pairs."""
    unit = points / np.linalg.norm(points, axis=1, keepdims=True)
    cosine = unit @ unit.T
    per_class = {}
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        pairs = [(i, j) for i in members for j in members if i != j]
        if pairs:
            per_class[label] = float(np.mean([1 - cosine[i, j] for i, j in pairs]))
    means = np.array([points[labels == label].mean(axis=0) for label in np.unique(labels)])
    unit_means = means / np.linalg.norm(means, axis=1, keepdims=True)
    mean_cosine = unit_means @ unit_means.T
    count = len(means)
    inter = np.mean([1 - mean_cosine[a, b] for a in range(count) for b in range(count) if a != b])
    return per_class, float(inter)


@pytest.mark.parametrize("seed", [0, 1])
def test_density_matches_direct_computation(seed: int) -> None:
    points, labels = clustered_points(seed)
    per_class, inter = direct_density(points, labels)
    metrics = embedding_space_metrics(points, labels)
    assert metrics["pi_intra"] == pytest.approx(np.mean(list(per_class.values())), abs=1e-9)
    assert metrics["pi_inter"] == pytest.approx(inter, abs=1e-9)
    assert metrics["pi_ratio"] == pytest.approx(metrics["pi_intra"] / inter, abs=1e-9)
    density = per_class_density(points, labels)
    for label, intra in zip(density["class_labels"], density["pi_intra"], strict=True):
        if label in per_class:
            assert intra == pytest.approx(per_class[label], abs=1e-9)
        else:
            assert np.isnan(intra)


def test_nearest_class_matches_brute_force() -> None:
    points, labels = clustered_points(2)
    density = per_class_density(points, labels)
    classes = np.unique(labels)
    means = np.array([points[labels == label].mean(axis=0) for label in classes])
    for index, label in enumerate(classes):
        distances = {
            other: 1
            - (means[index] @ means[j]) / np.linalg.norm(means[index]) / np.linalg.norm(means[j])
            for j, other in enumerate(classes)
            if other != label
        }
        nearest = min(distances, key=distances.get)
        assert density["nearest_class"][index] == nearest
        assert density["nearest_class_distance"][index] == pytest.approx(
            distances[nearest], abs=1e-9
        )


def test_uniformity_matches_pdist_and_samples_deterministically() -> None:
    points, _ = clustered_points(3)
    expected = math.log(np.mean(np.exp(-2 * pdist(points, "sqeuclidean"))))
    assert uniformity(points) == pytest.approx(expected, abs=1e-9)
    spread = 0.3 * np.random.default_rng(5).normal(size=(400, 4))
    full = uniformity(spread)
    sampled = uniformity(spread, sample_size=150, seed=4)
    assert sampled == uniformity(spread, sample_size=150, seed=4)
    assert sampled != uniformity(spread, sample_size=150, seed=5)
    assert sampled == pytest.approx(full, abs=0.1)


def test_torch_and_numpy_inputs_agree() -> None:
    points, labels = clustered_points(4)
    from_numpy = embedding_space_metrics(points, labels)
    from_torch = embedding_space_metrics(torch.from_numpy(points), torch.from_numpy(labels))
    from_float32 = embedding_space_metrics(points.astype(np.float32), labels)
    for key, value in from_numpy.items():
        assert from_torch[key] == pytest.approx(value, abs=1e-12), key
        assert from_float32[key] == pytest.approx(value, abs=1e-5), key
    assert set(from_numpy) == {"rho@1", "rho@2", "pi_intra", "pi_inter", "pi_ratio", "uniformity"}


def test_singleton_classes_only_give_nan_pi_intra() -> None:
    metrics = embedding_space_metrics(np.eye(3), np.array([0, 1, 2]))
    assert np.isnan(metrics["pi_intra"]) and np.isnan(metrics["pi_ratio"])
    assert metrics["pi_inter"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("embeddings", "labels", "message"),
    [
        (np.zeros((3, 2)), np.array([0, 1]), "differ in length"),
        (np.array([[np.nan, 0.0], [1, 1]]), np.array([0, 1]), "NaN or infinite"),
        (np.zeros((0, 2)), np.zeros(0), "empty"),
        (np.zeros(3), np.array([0, 1, 1]), "2-D"),
        (np.ones((3, 2)), np.array([1, 1, 1]), "at least two classes"),
        (np.zeros((3, 2)), np.array([0, 1, 1]), "all embeddings are zero"),
        (np.ones((3, 2)), np.array([0.0, 1.0, np.nan]), "labels contain NaN"),
    ],
)
def test_bad_input_raises_a_clear_error(
    embeddings: np.ndarray, labels: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        embedding_space_metrics(embeddings, labels)


def test_bad_spectral_decay_arguments() -> None:
    with pytest.raises(ValueError, match="k must be"):
        spectral_decay(np.array([0.6, 0.4]), 3)
    with pytest.raises(ValueError, match="non-negative"):
        spectral_decay(np.array([1.2, -0.2]), 1)
    with pytest.raises(ValueError, match="at least two"):
        uniformity(np.ones((1, 3)))


def test_docstring_examples_run() -> None:
    assert doctest.testmod(embedding_space_module).failed == 0


def official_rho(points: np.ndarray, k: int) -> float:
    """The official code's ρ@k (Roth et al. 2020, ``metrics/rho_spectrum.py``): singular values of
    ``TruncatedSVD(n_components=d − 1, n_iter=7, random_state=42)`` (uncentred), the k − 1 largest
    dropped, then KL(uniform ‖ normalised values)."""
    from scipy.stats import entropy
    from sklearn.decomposition import TruncatedSVD

    svd = TruncatedSVD(n_components=points.shape[1] - 1, n_iter=7, random_state=42).fit(points)
    values = svd.singular_values_[k - 1 :]
    return float(entropy(np.full(len(values), 1 / len(values)), values / values.sum()))


@pytest.mark.parametrize("dead_scale", [1.0, 1e-4])
def test_official_rho_spectrum_matches_truncated_svd(dead_scale: float) -> None:
    """``rho_spectrum="official"`` keeps the d − 1 largest singular values, as the official
    TruncatedSVD does; with one near-dead dimension "full" is far larger (its tiny last value
    dominates the KL), "official" is not."""
    points, labels = clustered_points(5)
    points = points.copy()
    points[:, -1] *= dead_scale
    official = embedding_space_metrics(points, labels, rho_spectrum="official")
    full = embedding_space_metrics(points, labels)
    for k in (1, 2):
        assert official[f"rho@{k}"] == pytest.approx(official_rho(points, k), rel=1e-6), k
    spectrum = singular_value_spectrum(points)
    assert official["rho@2"] == pytest.approx(spectral_decay(spectrum[:-1], 2), abs=1e-12)
    assert full["rho@2"] == pytest.approx(spectral_decay(spectrum, 2), abs=1e-12)
    if dead_scale < 1:
        assert full["rho@2"] > 0.3 and official["rho@2"] < 0.05
    assert {k: v for k, v in official.items() if "rho" not in k} == {
        k: v for k, v in full.items() if "rho" not in k
    }


def test_official_rho_spectrum_on_two_dimensions_and_bad_name() -> None:
    points = np.array([[3.0, 0.0], [0.0, 4.0], [1.0, 1.0]])
    metrics = embedding_space_metrics(points, np.array([0, 1, 1]), rho_spectrum="official")
    assert metrics["rho@1"] == 0.0 and math.isnan(metrics["rho@2"])
    with pytest.raises(ValueError, match="rho_spectrum must be one of full, official"):
        embedding_space_metrics(points, np.array([0, 1, 1]), rho_spectrum="truncated")
