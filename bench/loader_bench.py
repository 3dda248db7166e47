"""Data-loader throughput of an image-folder run (issue 28, item 3) with 0, 1 and 2 loader workers,
printed as JSON.

A tiny image folder is generated in a temporary directory (``--classes`` folders of
``--per-class`` JPEGs, ``--source-size`` pixels square, smooth random colours). Two parts, each
configuration in a fresh process (its wall time, and its CPU time with its loader workers' from the
operating system's accounting of the finished process), repeated ``--repeats`` times in turn:

- ``loader``: the training loader alone (``dml_core.engine.batches.TrainBatches``, the one the
  Trainer uses: the photo train transform, persistent workers) over ``--epochs`` epochs of shuffled
  batches; images per second of the first epoch (worker start-up included) and of the later ones.
- ``run``: a whole small training run on the folder (``small_cnn`` at ``--image-size``, one
  evaluation at the end), its wall and CPU time and every step's loss, compared with the losses of
  the run without workers (``losses_equal_to_0_workers``).

Run: ``python bench/loader_bench.py [--workers 0 1 2] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def make_image_folder(root: Path, classes: int, per_class: int, size: int) -> Path:
    """``root/class_XX/img_YYY.jpg``: smooth random colour fields (JPEG, quality 90)."""
    from PIL import Image

    generator = np.random.default_rng(0)
    for label in range(classes):
        folder = root / f"class_{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for item in range(per_class):
            coarse = generator.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
            image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
            image.save(folder / f"img_{item:03d}.jpg", quality=90)
    return root


def run_config(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    return {
        "dataset": "imagefolder",
        "data_root": str(args.root),
        "dataset_options": {"train_fraction": 0.5},
        "image_size": args.image_size,
        "num_workers": workers,
        "arch": "small_cnn",
        "pretrained": None,
        "frozen_bn": False,
        "embed_dim": 32,
        "loss": "margin",
        "batch_size": args.batch_size,
        "samples_per_class": 2,
        "epochs": args.epochs,
        "lr": 1e-3,
        "eval_every": args.epochs,
        "eval_ks": [1],
        "log_every": 10_000,
        "snapshots": "off",
        "device": "cpu",
        "amp": "off",
        "seed": 0,
    }


def loader_part(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    """The training loader alone: seconds and images per second of each epoch."""
    import torch

    from dml_core.data import build_dataset
    from dml_core.engine.batches import TrainBatches

    torch.manual_seed(0)
    dataset = build_dataset("imagefolder", args.root, "train", image_size=args.image_size)
    loader = TrainBatches(dataset, torch.device("cpu"), num_workers=workers, channels_last=False)
    order = np.random.default_rng(0)
    seconds = []
    for epoch in range(args.epochs):
        indices = order.permutation(len(dataset)).tolist()
        batches = [
            indices[i : i + args.batch_size] for i in range(0, len(indices), args.batch_size)
        ]
        started = time.perf_counter()
        count = sum(inputs.shape[0] for inputs, _ in loader(batches, epoch=epoch, first_batch=0))
        seconds.append(time.perf_counter() - started)
    return {
        "images_per_epoch": count,
        "epoch_s": seconds,
        "first_epoch_images_per_s": count / seconds[0],
        "later_epochs_images_per_s": count / statistics.median(seconds[1:] or seconds),
    }


def run_part(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    """A whole small training run: every step's loss and the final evaluation's Recall@1."""
    from dml_core.config import TrainConfig
    from dml_core.engine.trainer import Trainer

    trainer = Trainer(TrainConfig.from_dict(run_config(args, workers)))
    losses, recall = [], None
    for event in trainer.steps():
        if event["kind"] == "step":
            losses.append(float(trainer.last_loss))
        elif event["kind"] == "eval":
            recall = event["metrics"]["test/recall@1"]
    return {"steps": len(losses), "losses": losses, "test_recall@1": recall}


def measured(args: argparse.Namespace, part: str, workers: int) -> dict[str, Any]:
    """One configuration in a fresh process: its JSON, wall time and CPU time (its workers too)."""
    command = [sys.executable, __file__, "--one", part, "--workers", str(workers)]
    command += ["--root", str(args.root), "--epochs", str(args.epochs)]
    command += ["--image-size", str(args.image_size), "--batch-size", str(args.batch_size)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {**json.loads(output), "process_wall_s": wall, "process_cpu_s": cpu}


def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k, v in samples[0].items() if isinstance(v, float) and k != "test_recall@1"]
    summary = {f"median_{k}": statistics.median(s[k] for s in samples) for k in keys}
    return {**summary, **{k: [s[k] for s in samples] for k in keys}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", nargs="+", choices=("loader", "run"), default=["loader", "run"])
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--source-size", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--one", choices=("loader", "run"), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        part = loader_part if args.one == "loader" else run_part
        print(json.dumps(part(args, args.workers[0])))
        return
    report: dict[str, Any] = {
        "machine": {"cpu_count": os.cpu_count(), "load_average_1min_at_start": os.getloadavg()[0]},
        "folder": {
            "classes": args.classes,
            "images_per_class": args.per_class,
            "source_size": args.source_size,
            "train_images": args.classes // 2 * args.per_class,
        },
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
    }
    with tempfile.TemporaryDirectory() as folder:
        args.root = make_image_folder(
            Path(folder) / "images", args.classes, args.per_class, args.source_size
        )
        samples: dict[str, dict[int, list[dict[str, Any]]]] = {
            part: {w: [] for w in args.workers} for part in args.parts
        }
        for _ in range(args.repeats):
            for part in args.parts:
                for workers in args.workers:
                    samples[part][workers].append(measured(args, part, workers))
    for part, by_workers in samples.items():
        report[part] = {str(w): summarise(runs) for w, runs in by_workers.items()}
    if "run" in samples and 0 in samples["run"]:
        reference = samples["run"][0][0]
        report["run_steps"] = reference["steps"]
        report["run_test_recall@1"] = {
            str(w): [s["test_recall@1"] for s in runs] for w, runs in samples["run"].items()
        }
        report["losses_equal_to_0_workers"] = {
            str(w): all(s["losses"] == reference["losses"] for s in runs)
            for w, runs in samples["run"].items()
        }
    report["machine"]["load_average_1min_at_end"] = os.getloadavg()[0]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
