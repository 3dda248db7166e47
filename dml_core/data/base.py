"""Shared dataset machinery: the item contract, zero-shot class splits and robust image loading.

Every dataset yields ``(tensor, label, index)`` with ``label`` in ``0..C-1`` *within its split* and
``index`` the position of the returned item in the dataset (the DML protocol of Roth et al., ICML 2020:
train and test use disjoint classes). ``eval_train`` is the train split with test-time transforms.

Missing and unreadable images (docs/DESIGN.md §9): a listed file that does not exist is dropped when
the index is read (one ``stat`` each), with one warning giving the count and the first few paths;
so is every file that fails to decode before the first readable one of the split (the probe that
makes a split of only unreadable files a clear error). A file that turns out unreadable later, in
``__getitem__``, is never replaced by an item of another class: the item comes back as the next
readable item *of the same class*, with that item's own index, so training keeps correct labels
and evaluation (``compute_embeddings``) sees the index mismatch and drops the row.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
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
UNREADABLE_ERRORS = (OSError, ValueError, Image.DecompressionBombError)
PATHS_SHOWN = 3

Transform = Callable[[Any], Any]
Item = tuple[torch.Tensor, int, int]


def whole_split(dataset: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``dataset.tensors()`` (all inputs and labels at once) where it has one that answers, else
    None: the toy always, glyphs under their deterministic evaluation transform."""
    tensors = getattr(dataset, "tensors", None)
    return tensors() if callable(tensors) else None


class CorruptImageWarning(UserWarning):
    """Images were missing or could not be decoded and were dropped from a split."""


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
    """Resolve ``root``; a missing one raises one line with the expected layout."""
    if root is None:
        raise ValueError(
            f"dataset {dataset!r} needs root=<folder> (--data-root); expected {layout}"
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{dataset} root {str(path)!r} does not exist; expected {layout}")
    return path


def candidate_folders(root: Path, child_names: Iterable[str]) -> list[Path]:
    """``root`` itself, then each of its known child folders that exists (the paper's code and the
    archives put the data one level below the folder a user passes)."""
    return [root] + [root / name for name in child_names if (root / name).is_dir()]


def nothing_found(
    dataset: str, looked_for: str, root: Path, child_names: Iterable[str]
) -> FileNotFoundError:
    """The one-line error for a root holding no known layout: what was looked for, and where."""
    folders = [repr(str(root))] + [
        repr(str(root / name)) + ("" if (root / name).is_dir() else " (absent)")
        for name in child_names
    ]
    return FileNotFoundError(
        f"no {dataset} data found: looked for {looked_for} in {', '.join(folders)}"
    )


def is_hidden(path: Path) -> bool:
    """Dot files and folders, including macOS ``._*`` sidecars, are never data."""
    return path.name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """Visible image files directly inside ``folder``, sorted by name (extension case ignored)."""
    return sorted(
        p
        for p in folder.iterdir()
        if not is_hidden(p) and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )


def class_folders(folder: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """``(files, classes)`` of a ``<folder>/<class>/<image>`` tree: every ``(image path, class
    name)`` and the sorted names of the visible sub-folders holding at least one image."""
    folders = sorted(p for p in folder.iterdir() if not is_hidden(p) and p.is_dir())
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


def first_paths(paths: Sequence[str | Path]) -> str:
    """The first few of ``paths`` for a warning, with how many more there are."""
    shown = ", ".join(str(path) for path in paths[:PATHS_SHOWN])
    more = len(paths) - PATHS_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


def readable_positions(dataset: Any, returned_indices: np.ndarray) -> np.ndarray:
    """Positions ``i`` whose item came back as itself (``returned_indices[i] == i``).

    An unreadable file's item comes back as another item (see the module docstring); evaluation
    keeps only the returned positions, so no row is paired with another item's label. Dropped items
    give one ``CorruptImageWarning`` with the count and the first few paths.
    """
    returned_indices = np.asarray(returned_indices)
    positions = np.arange(len(returned_indices))
    kept = np.flatnonzero(returned_indices == positions)
    if len(kept) < len(positions):
        image_path = getattr(dataset, "image_path", lambda index: f"item {index}")
        dropped = [str(image_path(int(i))) for i in np.setdiff1d(positions, kept)]
        warnings.warn(
            f"{len(dropped)} unreadable item(s) of {len(positions)} dropped from the embeddings "
            f"(metrics use the other {len(kept)}): {first_paths(dropped)}",
            CorruptImageWarning,
            stacklevel=4,  # the caller of compute_embeddings (under its inference_mode wrapper)
        )
    return kept


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
    """Images on disk with one class each; missing and unreadable files are dropped, never
    substituted by another class (see the module docstring).

    ``files`` pairs each path with its class name; ``class_names`` fixes the split's classes and
    their order (label = position in it; a class left without files is dropped). ``verify=True``
    decodes every file up front and drops the bad ones, so ``__getitem__`` never meets one.
    ``skipped_files`` lists what this process dropped or met unreadable (DataLoader workers keep
    their own).
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
        files = self._drop_missing_and_unreadable(files, verify)
        kept_classes = {name for _, name in files}
        ordered = [name for name in class_names if name in kept_classes]
        label_of = {name: label for label, name in enumerate(ordered)}
        self.paths = [path for path, _ in files]
        self._set_labels(np.array([label_of[name] for _, name in files], dtype=np.int64), ordered)
        self._bad_indices: set[int] = set()

    def _drop_missing_and_unreadable(
        self, files: list[tuple[Path, str]], verify: bool
    ) -> list[tuple[Path, str]]:
        """``files`` without the missing ones and without those that fail to decode: every one
        when ``verify``, else those before the first readable file (the probe); one warning."""
        listed = len(files)
        present = [path.is_file() for path, _ in files]
        missing = [str(path) for (path, _), found in zip(files, present, strict=True) if not found]
        files = [file for file, found in zip(files, present, strict=True) if found]
        unreadable: list[str] = []
        first_error = ""
        good: list[tuple[Path, str]] = []
        for position, (path, name) in enumerate(files):
            try:
                load_rgb(path)
            except UNREADABLE_ERRORS as error:
                unreadable.append(str(path))
                first_error = first_error or f"{path}: {error}"
                continue
            good.append((path, name))
            if not verify:
                good.extend(files[position + 1 :])
                break
        self.skipped_files = missing + unreadable
        where = f"{self.name} {self.split} split under {str(self.root)!r}"
        if not good:
            if not listed:
                raise ValueError(f"{where}: no image files of its classes; expected image files")
            reason = f"first error: {first_error}" if first_error else f"e.g. {missing[0]}"
            raise ValueError(
                f"{where}: none of the {listed} listed image(s) is a readable image "
                f"({len(missing)} missing, {len(unreadable)} unreadable; {reason})"
            )
        if self.skipped_files:
            warnings.warn(
                f"{where}: dropped {len(self.skipped_files)} of {listed} image(s) "
                f"({len(missing)} missing, {len(unreadable)} unreadable): "
                f"{first_paths(self.skipped_files)}",
                CorruptImageWarning,
                stacklevel=4,
            )
        return good

    def __getitem__(self, index: int) -> Item:
        """Item ``index``; if its file is unreadable, the next readable item of the same class
        (its own index is returned, so an evaluation can tell and drop it)."""
        if index not in self._bad_indices:
            try:
                return self.transform(load_rgb(self.paths[index])), int(self.labels[index]), index
            except UNREADABLE_ERRORS as error:
                self._mark_bad(index, error)
        label = int(self.labels[index])
        same_class = np.flatnonzero(self.labels == label)
        start = int(np.searchsorted(same_class, index))
        for other in np.roll(same_class, -start).tolist():
            if other in self._bad_indices:
                continue
            try:
                return self.transform(load_rgb(self.paths[other])), label, other
            except UNREADABLE_ERRORS as error:
                self._mark_bad(other, error)
        raise ValueError(
            f"{self.name} {self.split} split under {str(self.root)!r}: every image of class "
            f"{self.class_names[label]!r} is unreadable, e.g. {self.paths[index]}; "
            "expected at least one readable image per class"
        )

    def _mark_bad(self, index: int, error: Exception) -> None:
        self._bad_indices.add(index)
        self.skipped_files.append(str(self.paths[index]))
        warnings.warn(
            f"{self.name}: unreadable image {self.paths[index]} ({error}); "
            "a same-class item stands in for it in training, evaluation drops it",
            CorruptImageWarning,
            stacklevel=3,
        )

    def image_path(self, index: int) -> str | None:
        return str(self.paths[index])

    def thumbnail(self, index: int, size: int = 64) -> Image.Image:
        """The image centre-cropped to a square; a grey square if the file is unreadable."""
        try:
            return fit_thumbnail(load_rgb(self.paths[index]), size)
        except UNREADABLE_ERRORS:
            return Image.new("RGB", (size, size), UNREADABLE_GREY)

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "root": str(self.root),
            "num_skipped": len(self.skipped_files),
            "skipped_files": list(self.skipped_files),
        }


class RootedImageDataset(ImageFileDataset):
    """Images found under one root folder (``--data-root``). Subclasses set ``layout`` (a one-line
    summary shown in errors) and ``split_files(folder, split) -> (files, the split's classes)``."""

    layout: ClassVar[str] = ""

    def split_files(self, folder: Path, split: str) -> tuple[list[tuple[Path, str]], list[str]]:
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
        files, classes = self.split_files(folder, split)
        super().__init__(
            files,
            classes,
            root=folder,
            split=split,
            transform=transform,
            image_size=image_size,
            verify=verify,
        )


class HalfSplitImageDataset(RootedImageDataset):
    """A benchmark whose ordered classes split in half: first half train, second half test.

    Subclasses set ``layout`` and ``find_files(root) -> (files, ordered classes)``.
    """

    @staticmethod
    def find_files(root: Path) -> tuple[list[tuple[Path, str]], list[str]]:
        raise NotImplementedError

    def split_files(self, folder: Path, split: str) -> tuple[list[tuple[Path, str]], list[str]]:
        files, ordered_classes = self.find_files(folder)
        return files, class_half(ordered_classes, split)
