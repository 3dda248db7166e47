"""Embedding-space properties that predict generalization (Roth et al., 2020; docs/DESIGN.md §3).

- Spectrum: singular values s of the uncentred X (N×d), descending, normalised s̃ = s / Σs, from
  the d×d Gram matrix XᵀX (O(N·d²)).
- ρ@k (spectral decay) = KL(U ‖ s̃′) = Σ_i u·log(u / s̃′_i), s̃′ = s̃ without its k−1 largest values,
  renormalised, u = 1/len(s̃′). Lower = flatter spectrum; the paper plots ρ@2 on the train split.
  ``rho_spectrum="full"`` uses all min(N, d) singular values; ``"official"`` only the d − 1
  largest, as the official code of Roth et al. (2020) does (``metrics/rho_spectrum.py``:
  ``TruncatedSVD(n_components=d − 1)``, uncentred). They differ when the smallest value is tiny
  (a near-dead dimension makes "full" large and leaves "official" small); for d = 2 "official"
  keeps one value, so ρ@1 = 0 and ρ@2 is NaN.
- π_intra = mean over classes with ≥ 2 items of the mean cosine distance 1 − cos over pairs i ≠ j
  of the class; for unit vectors x̂ with sum S over n items that is 1 − (‖S‖² − n) / (n(n − 1)),
  so it costs O(N·d). π_inter = the same quantity over the L2-normalised class means.
  π_ratio = π_intra / π_inter.
- Uniformity (Wang & Isola, 2020) = log E_{i<j} exp(−2‖xᵢ − xⱼ‖²), on the embeddings as given,
  over a fixed-seed sample of 5,000 items when N is larger.

Zero vectors stay zero when normalised (norms are clamped at 1e-12), so they count as orthogonal.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from dml_core.metrics._inputs import ArrayLike, as_numpy, check_embeddings, check_inputs

UNIFORMITY_SAMPLE_SIZE = 5000
UNIFORMITY_SEED = 0
UNIFORMITY_TEMPERATURE = 2.0
SPECTRAL_DECAY_RANKS = (1, 2)
RHO_SPECTRA = ("full", "official")
_ROW_BLOCK = 1024
_NORM_FLOOR = 1e-12
FLOAT64_BLOCK_ROWS = 65536
"""Rows converted to float64 at a time: memory beyond the input stays O(block × d), so a
million 128-d float32 rows need 64 MiB more, not a 1 GiB float64 copy."""


def _float64_blocks(points: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
    for start in range(0, points.shape[0], FLOAT64_BLOCK_ROWS):
        rows = slice(start, start + FLOAT64_BLOCK_ROWS)
        yield rows, points[rows].astype(np.float64)


def _gram(points: np.ndarray) -> np.ndarray:
    """XᵀX in float64, summed over row blocks."""
    gram = np.zeros((points.shape[1], points.shape[1]))
    for _, block in _float64_blocks(points):
        gram += block.T @ block
    return gram


def singular_value_spectrum(embeddings: ArrayLike) -> np.ndarray:
    """Normalised singular values s / Σs of X, descending, min(N, d) of them, via XᵀX."""
    points = as_numpy(check_embeddings(embeddings))
    gram = _gram(points)
    eigenvalues = np.linalg.eigvalsh(gram)[::-1][: min(points.shape)]
    singular_values = np.sqrt(np.clip(eigenvalues, 0.0, None))
    total = singular_values.sum()
    if total == 0:
        raise ValueError("all embeddings are zero: the spectrum is undefined")
    return singular_values / total


def spectral_decay(spectrum: np.ndarray, k: int = 1) -> float:
    """ρ@k = KL(U ‖ s̃′) with s̃′ the spectrum minus its k−1 largest values (inf if one is zero)."""
    values = np.sort(np.asarray(spectrum, dtype=np.float64).reshape(-1))[::-1]
    if not 1 <= k <= values.shape[0]:
        raise ValueError(f"k must be in [1, {values.shape[0]}] for a spectrum of that length")
    if (values < 0).any() or not np.isfinite(values).all():
        raise ValueError("a spectrum holds finite non-negative values")
    tail = values[k - 1 :]
    if (tail <= 0).any():
        return float("inf")
    tail = tail / tail.sum()
    uniform = 1.0 / tail.shape[0]
    return float(np.sum(uniform * np.log(uniform / tail)))


def _unit_rows(points: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(points, axis=1, keepdims=True)
    return points / np.maximum(norms, _NORM_FLOOR)


def _class_sums(values: np.ndarray, class_index: np.ndarray, num_classes: int) -> np.ndarray:
    """Σ of the rows of each class, (K, d), through a sparse one-hot product: O(N·d)."""
    from scipy import sparse

    one_hot = sparse.csr_matrix(
        (np.ones(class_index.shape[0]), (class_index, np.arange(class_index.shape[0]))),
        shape=(num_classes, class_index.shape[0]),
    )
    return np.asarray(one_hot @ values)


def _blockwise_class_sums(
    points: np.ndarray, class_index: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per class, the sums of the rows and of the unit rows (K, d) each, in float64 blocks."""
    sums = np.zeros((num_classes, points.shape[1]))
    unit_sums = np.zeros_like(sums)
    for rows, block in _float64_blocks(points):
        sums += _class_sums(block, class_index[rows], num_classes)
        unit_sums += _class_sums(_unit_rows(block), class_index[rows], num_classes)
    return sums, unit_sums


def _mean_pairwise_cosine_distance(unit_sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """1 − (‖S‖² − n) / (n(n − 1)) per row; NaN where n < 2."""
    counts = counts.astype(np.float64)
    pairs = counts * (counts - 1)
    mean_cosine = ((unit_sums**2).sum(axis=-1) - counts) / np.where(pairs > 0, pairs, 1.0)
    return np.where(pairs > 0, 1.0 - mean_cosine, np.nan)


def _unit_class_means(points: np.ndarray, class_index: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    sums = _class_sums(points, class_index, sizes.shape[0])
    return _unit_rows(sums / sizes[:, None])


def per_class_density(embeddings: ArrayLike, labels: ArrayLike) -> dict[str, np.ndarray]:
    """Per-class density for plots: each class's π_intra and its mean's nearest other class mean.

    Keys (arrays of length K, classes in sorted label order): ``class_labels``, ``class_sizes``,
    ``pi_intra`` (NaN for single-item classes), ``nearest_class`` (label of the class whose
    normalised mean is closest in cosine distance) and ``nearest_class_distance`` (that distance).
    """
    inputs = check_inputs(embeddings, labels)
    points = inputs.embeddings_numpy()
    sizes = inputs.class_sizes
    unit_sums = _class_sums(_unit_rows(points), inputs.class_index, inputs.num_classes)
    unit_means = _unit_class_means(points, inputs.class_index, sizes)
    nearest = np.empty(inputs.num_classes, dtype=np.int64)
    nearest_distance = np.empty(inputs.num_classes)
    for start in range(0, inputs.num_classes, _ROW_BLOCK):
        rows = np.arange(start, min(start + _ROW_BLOCK, inputs.num_classes))
        cosine = unit_means[rows] @ unit_means.T
        cosine[np.arange(rows.shape[0]), rows] = -np.inf
        nearest[rows] = cosine.argmax(axis=1)
        nearest_distance[rows] = 1.0 - cosine[np.arange(rows.shape[0]), nearest[rows]]
    return {
        "class_labels": inputs.class_labels,
        "class_sizes": sizes,
        "pi_intra": _mean_pairwise_cosine_distance(unit_sums, sizes),
        "nearest_class": inputs.class_labels[nearest],
        "nearest_class_distance": nearest_distance,
    }


def uniformity(
    embeddings: ArrayLike,
    *,
    sample_size: int = UNIFORMITY_SAMPLE_SIZE,
    seed: int = UNIFORMITY_SEED,
) -> float:
    """log of the mean over pairs i < j of exp(−2‖xᵢ − xⱼ‖²) (Wang & Isola, 2020).

    Computed in the embeddings' precision (float32 or float64), in blocks of rows against the
    columns j ≥ the block start (the upper triangle only); block sums are combined in float64.
    """
    points = as_numpy(check_embeddings(embeddings))
    if points.shape[0] < 2:
        raise ValueError("uniformity needs at least two embeddings")
    if points.shape[0] > sample_size:
        chosen = np.random.default_rng(seed).choice(points.shape[0], sample_size, replace=False)
        points = points[np.sort(chosen)]
    num_points = points.shape[0]
    squared_norms = (points**2).sum(axis=1)
    block_log_sums = []
    for start in range(0, num_points - 1, _ROW_BLOCK):
        rows = np.arange(start, min(start + _ROW_BLOCK, num_points - 1))
        columns = np.arange(start, num_points)
        squared = (
            squared_norms[rows, None]
            + squared_norms[None, columns]
            - 2 * points[rows] @ points[start:].T
        )
        upper = columns[None, :] > rows[:, None]
        exponents = -UNIFORMITY_TEMPERATURE * np.maximum(squared[upper], 0)
        largest = exponents.max()
        block_log_sums.append(
            float(largest) + np.log(np.exp(exponents - largest).sum(dtype=np.float64))
        )
    from scipy.special import logsumexp

    num_pairs = num_points * (num_points - 1) / 2
    return float(logsumexp(block_log_sums) - np.log(num_pairs))


def embedding_space_metrics(
    embeddings: ArrayLike, labels: ArrayLike, *, rho_spectrum: str = "full"
) -> dict[str, float]:
    """``rho@1``, ``rho@2``, ``pi_intra``, ``pi_inter``, ``pi_ratio``, ``uniformity``.

    Formulas in the module docstring (docs/DESIGN.md §3); ``rho_spectrum`` picks the singular
    values ρ@k uses ("full" or "official"). ``rho@2`` is NaN when that spectrum has one value;
    ``pi_intra`` is NaN when no class has two items.

    >>> import numpy as np
    >>> points = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    >>> embedding_space_metrics(points, np.array([0, 0, 1, 1]))["pi_ratio"]
    0.0
    """
    if rho_spectrum not in RHO_SPECTRA:
        raise ValueError(
            f"rho_spectrum must be one of {', '.join(RHO_SPECTRA)}, got {rho_spectrum!r}"
        )
    inputs = check_inputs(embeddings, labels)
    points = as_numpy(inputs.embeddings)  # float32 or float64; float64 only in row blocks
    spectrum = singular_value_spectrum(points)
    if rho_spectrum == "official":
        spectrum = spectrum[: points.shape[1] - 1]
    metrics = {
        f"rho@{k}": spectral_decay(spectrum, k) if k <= spectrum.shape[0] else float("nan")
        for k in SPECTRAL_DECAY_RANKS
    }
    sizes = inputs.class_sizes
    sums, unit_sums = _blockwise_class_sums(points, inputs.class_index, inputs.num_classes)
    per_class_intra = _mean_pairwise_cosine_distance(unit_sums, sizes)
    pi_intra = float(np.nanmean(per_class_intra)) if (sizes > 1).any() else float("nan")
    unit_means = _unit_rows(sums / sizes[:, None])
    pi_inter = float(
        _mean_pairwise_cosine_distance(unit_means.sum(axis=0), np.array(inputs.num_classes))
    )
    metrics.update(
        pi_intra=pi_intra,
        pi_inter=pi_inter,
        pi_ratio=pi_intra / pi_inter if pi_inter > 0 else float("nan"),
        uniformity=uniformity(inputs.embeddings),
    )
    return metrics
