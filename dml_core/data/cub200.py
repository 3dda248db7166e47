"""``cub200``: CUB-200-2011 birds (Wah et al. 2011); classes 1–100 train, 101–200 test.

Two layouts are read: the authors' (``images.txt``, ``image_class_labels.txt``, ``classes.txt``
and ``images/``) and the paper code's (``images/<NNN.name>/*.jpg``, classes in name order), each in
``<root>`` or in ``<root>/CUB_200_2011`` or ``<root>/cub200`` (the folder the paper's code is
given). On a smaller copy the first half of the classes (by id) is train and the second half test.
"""

from __future__ import annotations

from pathlib import Path

from dml_core.data.base import (
    DATASETS,
    HalfSplitImageDataset,
    candidate_folders,
    class_folders,
    nothing_found,
)

OFFICIAL_FILES = ("images.txt", "image_class_labels.txt", "classes.txt")
CHILD_FOLDERS = ("CUB_200_2011", "cub200")
CUB_LAYOUT = (
    "images/ with images.txt, image_class_labels.txt, classes.txt (the authors' archive) or "
    "images/<NNN.class_name>/*.jpg (the paper code's layout), in <root>, <root>/CUB_200_2011 "
    "or <root>/cub200"
)


def read_id_table(path: Path) -> dict[int, str]:
    """``"<id> <value>"`` lines → {id: value}; a malformed line is one ValueError naming it."""
    table = {}
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        columns = line.split(maxsplit=1)
        if len(columns) != 2 or not columns[0].isdigit():
            raise ValueError(f"{path}:{line_number}: expected '<integer id> <value>', got {line!r}")
        table[int(columns[0])] = columns[1].strip()
    return table


def official_cub(folder: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """(path, class name) pairs and class names in class-id order from the authors' metadata."""
    image_paths = read_id_table(folder / "images.txt")
    image_classes = read_id_table(folder / "image_class_labels.txt")
    class_names = read_id_table(folder / "classes.txt")
    unlabelled = sorted(set(image_paths) - set(image_classes))
    if unlabelled:
        raise ValueError(
            f"{folder / 'image_class_labels.txt'} has no class for image id {unlabelled[0]} "
            "(listed in images.txt); expected '<image id> <class id>' for every image"
        )
    files = []
    for image_id in sorted(image_paths):
        class_id = image_classes[image_id]
        if not class_id.isdigit() or int(class_id) not in class_names:
            raise ValueError(
                f"{folder / 'classes.txt'} has no class id {class_id!r} (given to image id "
                f"{image_id} in image_class_labels.txt); expected '<class id> <class name>' "
                "for every class"
            )
        files.append((folder / "images" / image_paths[image_id], class_names[int(class_id)]))
    return files, [class_names[class_id] for class_id in sorted(class_names)]


def find_cub(root: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """Detect the layout under ``root`` and list its files and ordered classes."""
    candidates = candidate_folders(root, CHILD_FOLDERS)
    for folder in candidates:
        if all((folder / name).is_file() for name in OFFICIAL_FILES):
            return official_cub(folder)
    for folder in candidates:
        if (folder / "images").is_dir():
            files, classes = class_folders(folder / "images")
            if classes:
                return files, classes
    raise nothing_found(
        "CUB-200-2011",
        f"{', '.join(OFFICIAL_FILES)} or images/<class>/ with images",
        root,
        CHILD_FOLDERS,
    )


@DATASETS.register("cub200")
class Cub200Dataset(HalfSplitImageDataset):
    """CUB-200-2011, split by class: first half train, second half test (zero-shot)."""

    layout = CUB_LAYOUT
    find_files = staticmethod(find_cub)
