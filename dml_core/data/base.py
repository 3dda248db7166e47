"""Shared dataset machinery: the item contract, zero-shot class splits and robust image loading.

Every dataset yields ``(tensor, label, index)`` with ``label`` in ``0..C-1`` *within its split* and
``index`` the position of the returned item in the dataset (the DML protocol of Roth et al., ICML 2020:
train and test use disjoint classes). ``eval_train`` is the train split with test-time transforms.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from dml_core.data.transforms import default_transforms
from dml_core.registry import Registry

DATASETS = Registry("dataset")
SPLITS = ("train", "test", "eval_train")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
UNREADABLE_GREY = (128, 128, 128)

Transform = Callable[[Any], Any]
Item = tuple[torch.Tensor, int, int]


class CorruptImageWarning(UserWarning):
    """An image could not be decoded and was skipped."""


def check_split(split: str) -> str:
    """Return ``split`` if valid, else raise a ValueError listing the valid names."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return split


def class_half(ordered_classes: Sequence[str], split: str) -> list[str]:
    """First ``len // 2`` classes for train/eval_train, the rest for test (CUB 100/100, CARS 98/98)."""
    num_train = len(ordered_classes) // 2
    if check_split(split) == "test":
        return list(ordered_classes[num_train:])
    return list(ordered_classes[:num_train])


def require_root(root: str | Path | None, dataset: str, layout: str) -> Path:
    """Resolve ``root``; a missing one raises with the expected layout spelled out."""
    if root is None:
        raise ValueError(f"dataset {dataset!r} needs root=<folder>; expected layout:\n{layout}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{dataset} root {str(path)!r} does not exist; expected:\n{layout}")
    return path


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (extension case ignored)."""
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def class_folders(folder: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """``(files, classes)`` of a ``<folder>/<class>/<image>`` tree: every ``(image path, class
    name)`` and the sorted names of the sub-folders holding at least one image."""
    folders = sorted(p for p in folder.iterdir() if p.is_dir())
    by_class = {p.name: paths for p in folders if (paths := list_images(p))}
    files = [(path, name) for name, paths in by_class.items() for path in paths]
    return files, list(by_class)


def load_rgb(path: str | Path) -> Image.Image:
    """Fully decode an image as RGB (raises OSError/ValueError on a corrupt or truncated file)."""
    with Image.open(path) as image:
        image.load()
        return image.convert("RGB")


def fit_thumbnail(image: Image.Image, size: int) -> Image.Image:
    """Centre-crop and resize to ``size``×``size``."""
    return ImageOps.fit(image, (size, size), method=Image.Resampling.BILINEAR)


class DMLDataset(Dataset, ABC):
    """A zero-shot split of a labelled dataset; subclasses set the attributes below."""

    name: ClassVar[str] = ""
    split: str
    labels: np.ndarray
    class_names: list[str]
    input_shape: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.labels)

    @abstractmethod
    def __getitem__(self, index: int) -> Item: ...

    @abstractmethod
    def thumbnail(self, index: int, size: int = 64) -> Image.Image:
        """A small picture of item ``index`` for the app's projections and retrieval grids."""

    def image_path(self, index: int) -> str | None:
        """The file behind item ``index``; None for generated data."""
        return None

    def summary(self) -> dict[str, Any]:
        counts = np.bincount(self.labels, minlength=self.num_classes)
        return {
            "dataset": self.name,
            "split": self.split,
            "num_items": len(self),
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "min_items_per_class": int(counts.min()),
            "max_items_per_class": int(counts.max()),
        }

    def _set_labels(self, labels: np.ndarray, class_names: Sequence[str]) -> None:
        """Store labels/classes and refuse a split that cannot be used for metric learning."""
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = list(class_names)
        if self.num_classes < 2:
            raise ValueError(
                f"{self.name} split {self.split!r} has {self.num_classes} class(es); "
                "metric learning needs at least two"
            )


class ImageFileDataset(DMLDataset):
    """Images on disk with one class each; unreadable files are skipped, warned once and counted.

    ``files`` pairs each path with its class name; ``class_names`` fixes the split's classes and
    their order (label = position in it). ``verify=True`` decodes every file up front and drops
    the bad ones; otherwise a bad file met in ``__getitem__`` is replaced by the next good item.
    Counts of load-time skips are per process (DataLoader workers keep their own).
    """

    def __init__(
        self,
        files: Sequence[tuple[Path, str]],
        class_names: Sequence[str],
        *,
        root: Path,
        split: str,
        transform: Transform | None = None,
        image_size: int = 224,
        verify: bool = False,
    ) -> None:
        self.split = check_split(split)
        self.root = root
        self.transform = (
            default_transforms("photo", split, image_size) if transform is None else transform
        )
        self.input_shape = (3, image_size, image_size)
        wanted = set(class_names)
        files = [(path, name) for path, name in files if name in wanted]
        self.skipped_files: list[str] = []
        if verify:
            files = self._drop_unreadable(files)
        kept_classes = {name for _, name in files}
        ordered = [name for name in class_names if name in kept_classes]
        label_of = {name: label for label, name in enumerate(ordered)}
        self.paths = [path for path, _ in files]
        self._set_labels(np.array([label_of[name] for _, name in files], dtype=np.int64), ordered)
        self._bad_indices: set[int] = set()

    def _drop_unreadable(self, files: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
        good = []
        for path, name in files:
            try:
                load_rgb(path)
            except (OSError, ValueError, Image.DecompressionBombError):
                self.skipped_files.append(str(path))
                continue
            good.append((path, name))
        if self.skipped_files:
            warnings.warn(
                f"{self.name}: verify dropped {len(self.skipped_files)} unreadable image(s), "
                f"e.g. {self.skipped_files[0]}",
                CorruptImageWarning,
                stacklevel=3,
            )
        return good

    def __getitem__(self, index: int) -> Item:
        """Item ``index``, or the next readable one (wrapping round) if that file is bad."""
        for offset in range(len(self)):
            current = (index + offset) % len(self)
            if current in self._bad_indices:
                continue
            try:
                image = load_rgb(self.paths[current])
            except (OSError, ValueError, Image.DecompressionBombError) as error:
                self._mark_bad(current, error)
                continue
            return self.transform(image), int(self.labels[current]), current
        raise RuntimeError(f"{self.name} {self.split}: no readable image under {self.root}")

    def _mark_bad(self, index: int, error: Exception) -> None:
        self._bad_indices.add(index)
        self.skipped_files.append(str(self.paths[index]))
        warnings.warn(
            f"{self.name}: skipping unreadable image {self.paths[index]} ({error})",
            CorruptImageWarning,
            stacklevel=3,
        )

    def image_path(self, index: int) -> str | None:
        return str(self.paths[index])

    def thumbnail(self, index: int, size: int = 64) -> Image.Image:
        """The image centre-cropped to a square; a grey square if the file is unreadable."""
        try:
            return fit_thumbnail(load_rgb(self.paths[index]), size)
        except (OSError, ValueError, Image.DecompressionBombError):
            return Image.new("RGB", (size, size), UNREADABLE_GREY)

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "root": str(self.root),
            "num_skipped": len(self.skipped_files),
            "skipped_files": list(self.skipped_files),
        }


class HalfSplitImageDataset(ImageFileDataset):
    """A benchmark whose ordered classes split in half: first half train, second half test.

    Subclasses set ``layout`` (shown in errors) and ``find_files(root) -> (files, ordered classes)``.
    """

    layout: ClassVar[str] = ""

    @staticmethod
    def find_files(root: Path) -> tuple[list[tuple[Path, str]], list[str]]:
        raise NotImplementedError

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        transform: Transform | None = None,
        image_size: int = 224,
        verify: bool = False,
    ) -> None:
        check_split(split)
        folder = require_root(root, self.name, self.layout)
        files, ordered_classes = self.find_files(folder)
        super().__init__(
            files,
            class_half(ordered_classes, split),
            root=folder,
            split=split,
            transform=transform,
            image_size=image_size,
            verify=verify,
        )
