"""``csv``: an open-metric-learning dataset CSV (``--dataset csv --data-root dataset.csv``).

Columns (OML's format): ``label`` (an integer class), ``path`` (relative to the CSV's folder unless
absolute), ``split`` (``train`` or ``validation``), ``is_query`` and ``is_gallery`` (booleans on
validation rows; without these columns every item is both, leave-one-out), optional ``category``
(kept, unused) and the box ``x_1, x_2, y_1, y_2`` (pixels; the image is cropped to
(x_1, y_1, x_2, y_2) when a row has one). ``train`` rows make the train and eval_train splits,
``validation`` rows the test split, whose ``is_query``/``is_gallery`` masks the evaluation uses
(the query/gallery protocol of ``dml_core.metrics.retrieval``).

Every problem of the file, on any row (a missing column, an unknown split, a missing image, a value
that is not a boolean, an integer or a number), is one ``ValueError`` naming the file and the line.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from dml_core.data.base import (
    DATASETS,
    UNREADABLE_ERRORS,
    UNREADABLE_GREY,
    ImageFileDataset,
    Item,
    Transform,
    check_split,
    fit_thumbnail,
    load_rgb,
)

REQUIRED = ("label", "path", "split")
BOX = ("x_1", "y_1", "x_2", "y_2")
OML_SPLITS = {"train": ("train", "eval_train"), "validation": ("test",)}
TRUE, FALSE = ("true", "1", "1.0", "yes", "t", "y"), ("false", "0", "0.0", "no", "f", "n")


def parse_flag(value: object) -> bool | None:
    """A boolean cell: True/False, 1/0, yes/no in any case; None when empty; else ValueError."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    text = "" if value is None else str(value).strip().lower()
    if text in ("", "nan", "none"):
        return None
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean (true/false, 1/0, yes/no)")


def _rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{path}: not a readable CSV file ({error})") from None
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise ValueError(f"{path}: no column {missing}; an OML dataset CSV has {list(REQUIRED)}")
    return rows


@DATASETS.register("csv")
class CsvDataset(ImageFileDataset):
    """The items of one split of an OML dataset CSV; ``is_query``/``is_gallery`` (bool arrays)
    on the test split when the file has those columns, else None."""

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        transform: Transform | None = None,
        image_size: int = 224,
        verify: bool = False,
    ) -> None:
        check_split(split)
        if root is None or not Path(root).is_file():
            raise ValueError(
                f"--data-root of the csv dataset is the dataset CSV file itself; got {root!r}"
            )
        table = Path(root)
        rows = _rows(table)
        files, labels, boxes, flags = [], [], [], []
        has_flags = "is_query" in rows[0] and "is_gallery" in rows[0] if rows else False
        for line, row in enumerate(rows, start=2):
            where = f"{table} line {line}"
            if row["split"] not in OML_SPLITS:
                raise ValueError(f"{where}: split {row['split']!r} is not train or validation")
            try:
                label = int(row["label"])
                box = [float(row[c]) for c in BOX] if any(row.get(c) for c in BOX) else None
                flag = [parse_flag(row.get(c)) for c in ("is_query", "is_gallery")]
            except (ValueError, KeyError) as error:
                raise ValueError(f"{where}: {error}") from None
            if row["split"] == "validation" and has_flags and None in flag:
                raise ValueError(f"{where}: a validation row needs is_query and is_gallery")
            image = Path(row["path"])
            image = image if image.is_absolute() else table.parent / image
            if not image.is_file():
                raise ValueError(f"{where}: image {row['path']!r} not found (looked at {image})")
            if split not in OML_SPLITS[row["split"]]:
                continue
            files.append((image, str(label)))
            labels.append(label)
            boxes.append(box)
            flags.append(flag)
        if not files:
            raise ValueError(f"{table}: no row of split {' or '.join(self._oml_names(split))}")
        classes = [str(label) for label in sorted(set(labels))]
        super().__init__(
            files,
            classes,
            root=table.parent,
            split=split,
            transform=transform,
            image_size=image_size,
            verify=verify,
        )
        kept = self._kept_rows([path for path, _ in files])
        self.boxes = [boxes[i] for i in kept]
        self.is_query = self.is_gallery = None
        if split == "test" and has_flags:
            self.is_query = np.array([flags[i][0] for i in kept], dtype=bool)
            self.is_gallery = np.array([flags[i][1] for i in kept], dtype=bool)
        self.image_transform, self.transform = self.transform, self._crop

    def query_gallery(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(is_query, is_gallery)`` per item (the test split of a file with those columns),
        else None: every item is both (leave-one-out)."""
        return None if self.is_query is None else (self.is_query, self.is_gallery)

    @staticmethod
    def _oml_names(split: str) -> list[str]:
        return [name for name, ours in OML_SPLITS.items() if split in ours]

    def _kept_rows(self, listed: list[Path]) -> list[int]:
        """Row of each kept item (unreadable files drop out in order; greedy match)."""
        kept, position = [], 0
        for path in self.paths:
            while listed[position] != path:
                position += 1
            kept.append(position)
            position += 1
        return kept

    def _crop(self, image: Image.Image) -> Image.Image:
        return image  # the crop needs the index: ``__getitem__`` applies it

    def _cropped(self, image: Image.Image, index: int) -> Image.Image:
        box = self.boxes[index]
        return image if box is None else image.crop(tuple(box))

    def __getitem__(self, index: int) -> Item:
        image, label, returned = super().__getitem__(index)
        return self.image_transform(self._cropped(image, returned)), label, returned

    def thumbnail(self, index: int, size: int = 64) -> Image.Image:
        """The image (cropped to its box) centre-cropped to a square; grey if unreadable."""
        if self.boxes[index] is None:
            return super().thumbnail(index, size)
        try:
            return fit_thumbnail(self._cropped(load_rgb(self.paths[index]), index), size)
        except UNREADABLE_ERRORS:
            return Image.new("RGB", (size, size), UNREADABLE_GREY)
