"""The four splits a run uses, built from its TrainConfig.

- ``train``: the train classes with training transforms (what the sampler draws from);
- ``eval_train``: the same classes with test-time transforms (ρ@k and π metrics, as the paper
  computes them on the training data);
- ``test``: the held-out test classes (retrieval metrics);
- ``val``: with ``val_classes > 0``, the last fraction of the train classes, removed from ``train``
  and ``eval_train`` and used to select the best epoch without test labels.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from dml_core.config import TrainConfig
from dml_core.data import build_dataset
from dml_core.data.subset import ClassSubset, split_validation_classes

SPLIT_NAMES = ("train", "test", "eval_train", "val")


def build_split(config: TrainConfig, split: str, data_root: str | None = None) -> Any:
    """The dataset of ``split`` (one of ``SPLIT_NAMES``) as ``config`` describes it; ``data_root``
    overrides ``config.data_root`` (a dataset that moved since training)."""
    if split not in SPLIT_NAMES:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLIT_NAMES)}")
    options = dict(config.dataset_options)
    if config.image_size is not None:
        options["image_size"] = config.image_size
    root = data_root if data_root is not None else config.data_root
    base_split = {"val": "eval_train"}.get(split, split)
    dataset = build_dataset(config.dataset, root=root, split=base_split, **options)
    if config.val_classes > 0 and split != "test":
        train_classes, val_classes = split_validation_classes(
            dataset.num_classes, config.val_classes
        )
        dataset = ClassSubset(dataset, val_classes if split == "val" else train_classes)
    elif split == "val":
        raise ValueError("there is no validation split: the run was configured with val_classes=0")
    return dataset


def resolved_dataset_options(dataset: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Every generation option of a generated dataset (its ``spec`` dataclass), so a checkpoint
    rebuilds the same data even after the generator's defaults change; other datasets: a copy of
    ``options``."""
    spec = getattr(getattr(dataset, "base", dataset), "spec", None)
    if spec is None or not dataclasses.is_dataclass(spec):
        return dict(options)
    return json.loads(json.dumps(dataclasses.asdict(spec)))
