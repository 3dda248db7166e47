"""``imagefolder``: the user's own ``<root>/<class>/*.{jpg,jpeg,png,bmp,webp}``, split by class.

Classes are sorted by folder name; by default the first ``train_fraction`` of them (0.5) train and
the rest test. Explicit ``train_classes`` and/or ``test_classes`` override the fraction (a side
left out gets every other class).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dml_core.data.base import (
    DATASETS,
    IMAGE_EXTENSIONS,
    ImageFileDataset,
    Transform,
    check_split,
    class_folders,
    nothing_found,
    require_root,
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
class ImageFolderDataset(ImageFileDataset):
    """A folder of class folders, split by class (zero-shot)."""

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        transform: Transform | None = None,
        image_size: int = 224,
        verify: bool = False,
        train_fraction: float = 0.5,
        train_classes: Sequence[str] | None = None,
        test_classes: Sequence[str] | None = None,
    ) -> None:
        check_split(split)
        folder = require_root(root, self.name, IMAGEFOLDER_LAYOUT)
        files, classes = class_folders(folder)
        if not classes:
            raise nothing_found(
                "imagefolder", "class folders holding images (<class name>/<image>)", folder, ()
            )
        super().__init__(
            files,
            split_classes(classes, split, train_fraction, train_classes, test_classes),
            root=folder,
            split=split,
            transform=transform,
            image_size=image_size,
            verify=verify,
        )
