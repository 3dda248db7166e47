"""``ClassSubset``: the items of some classes of a dataset, relabelled 0..C'-1.

Used to hold out validation classes from the train split (``--val-classes``), so a checkpoint can be
selected without looking at the test classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dml_core.data.base import whole_split


class ClassSubset(Dataset):
    """View of ``base`` restricted to ``classes`` (labels of ``base``); indices are the subset's."""

    def __init__(self, base: Any, classes: Sequence[int]) -> None:
        classes = sorted(int(c) for c in classes)
        if len(classes) < 2:
            raise ValueError(f"a class subset needs at least two classes, got {len(classes)}")
        self.base = base
        base_labels = np.asarray(base.labels)
        self.base_indices = np.flatnonzero(np.isin(base_labels, classes))
        relabel = {c: i for i, c in enumerate(classes)}
        self.labels = np.array(
            [relabel[int(c)] for c in base_labels[self.base_indices]], dtype=np.int64
        )
        self.class_names = [base.class_names[c] for c in classes]
        self.num_classes = len(classes)
        self.input_shape = base.input_shape

    def __len__(self) -> int:
        return len(self.base_indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        """Item ``index``; the index returned is the subset's position of the item ``base`` gave
        back (another item of the same class when the file is unreadable, see ``base``)."""
        tensor, _, returned = self.base[int(self.base_indices[index])]
        position = int(np.searchsorted(self.base_indices, returned))
        return tensor, int(self.labels[index]), position

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The subset's items at once, when ``base`` gives its whole split (else None)."""
        whole = whole_split(self.base)
        if whole is None:
            return None
        return whole[0][torch.as_tensor(self.base_indices)], torch.from_numpy(self.labels)

    def image_path(self, index: int) -> str | None:
        return self.base.image_path(int(self.base_indices[index]))

    def thumbnail(self, index: int, size: int = 64) -> Any:
        return self.base.thumbnail(int(self.base_indices[index]), size=size)

    def summary(self) -> dict[str, Any]:
        return {**self.base.summary(), "items": len(self), "classes": self.num_classes}


def split_validation_classes(num_classes: int, fraction: float) -> tuple[list[int], list[int]]:
    """Last ``round(fraction·C)`` train classes become validation classes: ``(train, val)``."""
    num_val = round(fraction * num_classes)
    if num_val < 2 or num_classes - num_val < 2:
        raise ValueError(
            f"val_classes={fraction} of {num_classes} train classes leaves {num_val} validation and "
            f"{num_classes - num_val} training classes; each needs at least two"
        )
    return list(range(num_classes - num_val)), list(range(num_classes - num_val, num_classes))
