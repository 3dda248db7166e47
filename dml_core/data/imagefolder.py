"""``imagefolder``: the user's own ``<root>/<class>/*.{jpg,jpeg,png,bmp,webp}``, split by class.

Classes are sorted by folder name; by default the first ``train_fraction`` of them (0.5) train and
the rest test. Explicit ``train_classes`` and/or ``test_classes`` override the fraction (a side
left out gets every other class).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dml_core.data.base import (
    DATASETS,
    IMAGE_EXTENSIONS,
    RootedImageDataset,
    class_folders,
    nothing_found,
)

IMAGEFOLDER_LAYOUT = (
    f"<root>/<class name>/<image>: one folder per class, images ending in "
    f"{', '.join(IMAGE_EXTENSIONS)} (hidden files and folders are ignored)"
)


def split_classes(
    classes: Sequence[str],
    split: str,
    train_fraction: float,
    train_classes: Sequence[str] | None,
    test_classes: Sequence[str] | None,
) -> list[str]:
    """The classes of ``split`` (in sorted order): by explicit lists or by fraction of the sorted names."""
    chosen_train, chosen_test = set(train_classes or ()), set(test_classes or ())
    unknown = sorted((chosen_train | chosen_test) - set(classes))
    if unknown:
        raise ValueError(f"unknown class folder(s) {unknown}; found: {list(classes)}")
    overlap = sorted(chosen_train & chosen_test)
    if overlap:
        raise ValueError(f"classes {overlap} are in both train_classes and test_classes")
    if chosen_train or chosen_test:
        chosen_train = chosen_train or set(classes) - chosen_test
        chosen_test = chosen_test or set(classes) - chosen_train
        train = [name for name in classes if name in chosen_train]
        test = [name for name in classes if name in chosen_test]
    else:
        if not 0.0 < train_fraction < 1.0:
            raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
        num_train = int(len(classes) * train_fraction)
        train, test = list(classes[:num_train]), list(classes[num_train:])
    return test if split == "test" else train


@DATASETS.register("imagefolder")
class ImageFolderDataset(RootedImageDataset):
    """A folder of class folders, split by class (zero-shot); the options of ``split_classes``."""

    layout = IMAGEFOLDER_LAYOUT

    def __init__(
        self,
        *args: Any,
        train_fraction: float = 0.5,
        train_classes: Sequence[str] | None = None,
        test_classes: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.train_fraction = train_fraction
        self.train_classes = train_classes
        self.test_classes = test_classes
        super().__init__(*args, **kwargs)

    def split_files(self, folder: Path, split: str) -> tuple[list[tuple[Path, str]], list[str]]:
        files, classes = class_folders(folder)
        if not classes:
            raise nothing_found(
                "imagefolder", "class folders holding images (<class name>/<image>)", folder, ()
            )
        chosen = split_classes(
            classes, split, self.train_fraction, self.train_classes, self.test_classes
        )
        return files, chosen
