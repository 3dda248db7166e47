"""The loader-worker default of an image-folder run: a run left at the default trains exactly as a
run without workers (same loss at every step), and a run with a worker trains as many steps."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from dml_core.config import TrainConfig
from dml_core.engine.trainer import Trainer


@pytest.fixture
def one_thread() -> Any:
    """Tiny convolutions: one torch thread (two wait on each other on a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def image_folder(root: Path, classes: int = 4, per_class: int = 6) -> Path:
    generator = np.random.default_rng(0)
    for label in range(classes):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True)
        for item in range(per_class):
            pixels = generator.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{item}.jpg")
    return root


def step_losses(root: Path, **options: Any) -> list[float]:
    config = {
        "dataset": "imagefolder",
        "data_root": str(root),
        "image_size": 32,
        "arch": "small_cnn",
        "pretrained": None,
        "frozen_bn": False,
        "embed_dim": 8,
        "batch_size": 6,
        "epochs": 2,
        "lr": 1e-3,
        "eval_every": 2,
        "eval_ks": [1],
        "snapshots": "off",
        "device": "cpu",
        "amp": "off",
        **options,
    }
    trainer = Trainer(TrainConfig.from_dict(config))
    losses = []
    for event in trainer.steps():
        if event["kind"] == "step":
            losses.append(float(trainer.last_loss))
    return losses


@pytest.mark.usefixtures("one_thread")
def test_default_workers_train_as_no_workers(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "images")
    default = step_losses(root)
    assert default == step_losses(root, num_workers=0) and len(default) == 4
    with_worker = step_losses(root, num_workers=1)
    assert len(with_worker) == len(default) and all(map(math.isfinite, with_worker))
