"""Datasets for zero-shot metric learning: registry ``DATASETS`` and :func:`build_dataset`.

Every dataset yields ``(tensor, label, index)``; see :mod:`dml_core.data.base` for the contract.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dml_core.data.base import (
    DATASETS,
    SPLITS,
    CorruptImageWarning,
    DMLDataset,
    ImageFileDataset,
    Transform,
)
from dml_core.data.cars196 import Cars196Dataset
from dml_core.data.csv_dataset import CsvDataset
from dml_core.data.cub200 import Cub200Dataset
from dml_core.data.glyphs import GlyphsDataset, GlyphSpec, generate_glyphs, load_glyphs
from dml_core.data.imagefolder import ImageFolderDataset
from dml_core.data.sop import SopDataset
from dml_core.data.toy_diagonal import ToyDiagonalDataset
from dml_core.data.transforms import default_transforms


def build_dataset(
    name: str,
    root: str | Path | None = None,
    split: str = "train",
    transform: Transform | None = None,
    **options: Any,
) -> DMLDataset:
    """``DATASETS[name](root, split, transform, **options)``; ``transform=None`` = the default.

    An unknown name or option raises one ``ValueError`` listing the valid ones.
    """
    return DATASETS.build(name, root=root, split=split, transform=transform, options=options)


__all__ = [
    "DATASETS",
    "SPLITS",
    "Cars196Dataset",
    "CorruptImageWarning",
    "CsvDataset",
    "Cub200Dataset",
    "DMLDataset",
    "GlyphSpec",
    "GlyphsDataset",
    "ImageFileDataset",
    "ImageFolderDataset",
    "SopDataset",
    "ToyDiagonalDataset",
    "build_dataset",
    "default_transforms",
    "generate_glyphs",
    "load_glyphs",
]
