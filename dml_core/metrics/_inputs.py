"""Validation shared by every metric: one clear ValueError for each way the input can be wrong.

torch is never imported here: a tensor can only exist once torch is loaded, so :func:`is_tensor`
asks ``sys.modules`` (the app's pages score numpy arrays without loading torch).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

if TYPE_CHECKING:
    import torch

ArrayLike: TypeAlias = "np.ndarray | torch.Tensor"


def is_tensor(value: object) -> bool:
    """Whether ``value`` is a torch tensor, without importing torch (none exists before it is)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


MAX_EMBEDDING_NORM = 1e15
"""Largest row norm accepted. faiss works in float32 (max 3.4e38), and ``‖x − y‖² ≤ 4·max‖x‖²``
overflows from norms near 9e18 on: k-means then aborts the process ("invalid cluster
assignment", measured at norm 2.8e19 with d = 8). 1e15 leaves a factor 10⁷ in the square."""


class EmbeddingRangeError(ValueError):
    """Embeddings that are NaN, infinite or too large for float32 distances (a diverged model)."""


@dataclass(frozen=True)
class MetricInputs:
    """Checked embeddings and labels, with labels re-indexed to classes ``0 … K−1``.

    ``embeddings`` keeps its kind and device (a torch tensor stays on its device so the kNN can
    run there); ``class_index[i]`` is item i's class, ``class_labels[c]`` the original label of
    class c and ``class_sizes[c]`` its number of items.
    """

    embeddings: np.ndarray | torch.Tensor
    class_index: np.ndarray
    class_labels: np.ndarray
    class_sizes: np.ndarray

    @property
    def num_items(self) -> int:
        return int(self.class_index.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.class_sizes.shape[0])

    def embeddings_numpy(self) -> np.ndarray:
        """The embeddings as a float64 numpy array (one device→host copy for CUDA tensors)."""
        return as_numpy(self.embeddings).astype(np.float64)


def as_numpy(array: ArrayLike) -> np.ndarray:
    """A numpy view or copy of a numpy array or a torch tensor on any device."""
    if is_tensor(array):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def check_embeddings(embeddings: ArrayLike) -> np.ndarray | torch.Tensor:
    """Checked embeddings (N, d), N ≥ 1, finite, row norms ≤ ``MAX_EMBEDDING_NORM``: float64 if
    given so, else float32."""
    if is_tensor(embeddings):
        import torch

        checked: np.ndarray | torch.Tensor = embeddings.detach()
        if checked.is_complex() or checked.dtype == torch.bool:
            raise ValueError(f"embeddings must be real numbers, got dtype {checked.dtype}")
        if checked.dtype != torch.float64:
            checked = checked.to(torch.float32)
    else:
        checked = np.asarray(embeddings)
        if checked.dtype.kind not in "fiu":
            raise ValueError(f"embeddings must be real numbers, got dtype {checked.dtype}")
        keep_double = checked.dtype == np.float64
        checked = np.ascontiguousarray(checked, dtype=np.float64 if keep_double else np.float32)
    if checked.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (N, d), got shape {tuple(checked.shape)}")
    if checked.shape[0] == 0 or checked.shape[1] == 0:
        raise ValueError(f"embeddings are empty: shape {tuple(checked.shape)}")
    _check_range(checked)
    return checked


def _check_range(checked: np.ndarray | torch.Tensor) -> None:
    """Finite, and every row norm ≤ ``MAX_EMBEDDING_NORM`` (norms in float64, so they do not
    overflow themselves); exact norms are computed only when ``max|x|·√d`` exceeds the bound."""
    if is_tensor(checked):
        import torch

        if not bool(torch.isfinite(checked).all()):
            raise EmbeddingRangeError("embeddings contain NaN or infinite values")
        largest = float(checked.abs().max())
    else:
        if not bool(np.isfinite(checked).all()):
            raise EmbeddingRangeError("embeddings contain NaN or infinite values")
        largest = float(max(checked.max(), -checked.min()))  # no N×d temporary
    if largest * np.sqrt(checked.shape[1]) <= MAX_EMBEDDING_NORM:
        return
    if is_tensor(checked):
        import torch

        norms = torch.linalg.vector_norm(checked.to(torch.float64), dim=1).cpu().numpy()
    else:
        norms = np.linalg.norm(checked.astype(np.float64), axis=1)
    row = int(np.argmax(norms))
    if norms[row] > MAX_EMBEDDING_NORM:
        raise EmbeddingRangeError(
            f"embeddings are too large: row {row} has norm {norms[row]:.3g}, more than the "
            f"{MAX_EMBEDDING_NORM:.0e} that float32 distances (faiss) hold without overflow"
        )


def check_inputs(embeddings: ArrayLike, labels: ArrayLike) -> MetricInputs:
    """Validate a pair (embeddings (N, d), labels (N,)) with at least two classes."""
    checked = check_embeddings(embeddings)
    label_array = as_numpy(labels)
    if label_array.ndim != 1:
        raise ValueError(f"labels must be 1-D (N,), got shape {label_array.shape}")
    if label_array.shape[0] != checked.shape[0]:
        raise ValueError(
            f"embeddings and labels differ in length: {checked.shape[0]} embeddings, "
            f"{label_array.shape[0]} labels"
        )
    if label_array.dtype.kind == "f" and not np.isfinite(label_array).all():
        raise ValueError("labels contain NaN or infinite values")
    class_labels, class_index, class_sizes = np.unique(
        label_array, return_inverse=True, return_counts=True
    )
    if class_labels.shape[0] < 2:
        raise ValueError(
            f"retrieval and class-density metrics need at least two classes, got "
            f"{class_labels.shape[0]} (labels: {class_labels.tolist()[:5]})"
        )
    return MetricInputs(
        embeddings=checked,
        class_index=class_index.reshape(-1).astype(np.int64),
        class_labels=class_labels,
        class_sizes=class_sizes.astype(np.int64),
    )
