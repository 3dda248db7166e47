"""``cars196``: Stanford Cars (Krause et al. 2013); classes 1–98 train, 99–196 test.

Two layouts are read: the authors' ``<root>/cars_annos.mat`` (fields ``relative_im_path`` and
``class``, optional ``class_names``) with ``<root>/car_ims/``, and the paper code's
``<root>/images/<class name>/*.jpg`` (classes in name order). On a smaller copy the first half of
the classes is train and the second half test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from dml_core.data.base import (
    DATASETS,
    HalfSplitImageDataset,
    class_folders,
)

CARS_LAYOUT = """\
  <root>/cars_annos.mat + <root>/car_ims/*.jpg   (the authors' archive), or
  <root>/images/<class name>/*.jpg               (the paper code's layout)"""


def official_cars(root: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """(path, class name) pairs and class names in class-id order from ``cars_annos.mat``."""
    annotation_file = root / "cars_annos.mat"
    try:
        mat = scipy.io.loadmat(annotation_file, squeeze_me=True)
        annotations = np.atleast_1d(mat["annotations"])
        relative_paths = [str(path) for path in annotations["relative_im_path"]]
        class_ids = [int(class_id) for class_id in annotations["class"]]
    except (ValueError, KeyError, OSError) as error:
        raise ValueError(
            f"cannot read {annotation_file} ({error}); expected a struct array 'annotations' "
            "with fields relative_im_path and class"
        ) from error
    stored_names = [str(name) for name in np.atleast_1d(mat.get("class_names", []))]
    ordered_ids = sorted(set(class_ids))
    name_of = {
        class_id: stored_names[class_id - 1]
        if class_id <= len(stored_names)
        else f"class_{class_id:03d}"
        for class_id in ordered_ids
    }
    files = [
        (root / path, name_of[class_id])
        for path, class_id in zip(relative_paths, class_ids, strict=True)
    ]
    if files and not files[0][0].is_file():
        raise FileNotFoundError(
            f"{files[0][0]} (listed in cars_annos.mat) is missing; expected:\n{CARS_LAYOUT}"
        )
    return files, [name_of[class_id] for class_id in ordered_ids]


def find_cars(root: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """Detect the layout under ``root`` and list its files and ordered classes."""
    if (root / "cars_annos.mat").is_file():
        return official_cars(root)
    if (root / "images").is_dir():
        files, classes = class_folders(root / "images")
        if classes:
            return files, classes
    raise FileNotFoundError(
        f"no CARS196 layout found under {str(root)!r}; expected:\n{CARS_LAYOUT}"
    )


@DATASETS.register("cars196")
class Cars196Dataset(HalfSplitImageDataset):
    """CARS196, split by class: first half train, second half test (zero-shot)."""

    name = "cars196"
    layout = CARS_LAYOUT
    find_files = staticmethod(find_cars)
