"""``cub200``: CUB-200-2011 birds (Wah et al. 2011); classes 1–100 train, 101–200 test.

Two layouts are read: the authors' (``images.txt``, ``image_class_labels.txt``, ``classes.txt``
and ``images/`` in ``<root>/CUB_200_2011/`` or in ``<root>``) and the paper code's
(``<root>/images/<NNN.name>/*.jpg``, classes in name order). On a smaller copy the first half of
the classes (by id) is train and the second half test.
"""

from __future__ import annotations

from pathlib import Path

from dml_core.data.base import (
    DATASETS,
    HalfSplitImageDataset,
    class_folders,
)

CUB_LAYOUT = """\
  <root>/CUB_200_2011/  (or <root> itself) with images/, images.txt, image_class_labels.txt,
                        classes.txt   (the authors' archive), or
  <root>/images/<NNN.class_name>/*.jpg   (the paper code's layout)"""

OFFICIAL_FILES = ("images.txt", "image_class_labels.txt", "classes.txt")


def read_id_table(path: Path) -> dict[int, str]:
    """``"<id> <value>"`` lines → {id: value}."""
    table = {}
    for line in path.read_text().splitlines():
        if line.strip():
            key, value = line.split(maxsplit=1)
            table[int(key)] = value.strip()
    return table


def official_cub(folder: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """(path, class name) pairs and class names in class-id order from the authors' metadata."""
    image_paths = read_id_table(folder / "images.txt")
    image_classes = read_id_table(folder / "image_class_labels.txt")
    class_names = read_id_table(folder / "classes.txt")
    missing = sorted(set(image_paths) - set(image_classes))
    if missing:
        raise ValueError(
            f"{folder / 'image_class_labels.txt'} has no class for image id {missing[0]}"
        )
    files = [
        (folder / "images" / image_paths[image_id], class_names[int(image_classes[image_id])])
        for image_id in sorted(image_paths)
    ]
    if files and not files[0][0].is_file():
        raise FileNotFoundError(
            f"{files[0][0]} (listed in images.txt) is missing; expected:\n{CUB_LAYOUT}"
        )
    return files, [class_names[class_id] for class_id in sorted(class_names)]


def find_cub(root: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """Detect the layout under ``root`` and list its files and ordered classes."""
    candidates = [root / "CUB_200_2011", root]
    for folder in candidates:
        if (
            all((folder / name).is_file() for name in OFFICIAL_FILES)
            and (folder / "images").is_dir()
        ):
            return official_cub(folder)
    for folder in candidates:
        if (folder / "images").is_dir():
            files, classes = class_folders(folder / "images")
            if classes:
                return files, classes
    raise FileNotFoundError(
        f"no CUB-200-2011 layout found under {str(root)!r}; expected:\n{CUB_LAYOUT}"
    )


@DATASETS.register("cub200")
class Cub200Dataset(HalfSplitImageDataset):
    """CUB-200-2011, split by class: first half train, second half test (zero-shot)."""

    name = "cub200"
    layout = CUB_LAYOUT
    find_files = staticmethod(find_cub)
