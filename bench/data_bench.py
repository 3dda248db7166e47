"""Data pipeline benchmark: glyph generation and DataLoader throughput; prints JSON.

    .venv/bin/python bench/data_bench.py [--repeats 3] [--num-jpegs 1000]

Measures (medians over ``--repeats``): generating the default glyph set (8,000 images) cold, from
the disk cache and from memory (cold also in process CPU time, less distorted by a loaded
machine); images per second through a DataLoader (batch 112) for the glyphs train split and
for a folder of generated 256×256 JPEGs with the paper's train transform (224), with 0, 1 and 2
workers (and 0 workers with one torch thread). Throughput excludes the first batch (worker
start-up), reported apart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from dml_core.data import build_dataset
from dml_core.data.glyphs import GlyphSpec, clear_memory_cache, generate_glyphs, load_glyphs

BATCH_SIZE = 112
JPEG_SIZE = 256
JPEG_CLASSES = 20


def median_seconds(action: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Median wall-clock and process-CPU durations of ``action``."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        action()
        walls.append(time.perf_counter() - wall_start)
        cpus.append(time.process_time() - cpu_start)
    return statistics.median(walls), statistics.median(cpus)


def loader_throughput(dataset: Dataset, num_workers: int, repeats: int) -> dict[str, float]:
    """Median images/s over full passes after the first batch, and the first batch's latency."""
    rates, first_batch = [], []
    for _ in range(repeats):
        loader = DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, num_workers=num_workers)
        start = time.perf_counter()
        batches = iter(loader)
        next(batches)
        warm = time.perf_counter()
        images = sum(len(batch[0]) for batch in batches)
        rates.append(images / (time.perf_counter() - warm))
        first_batch.append(warm - start)
    return {
        "images_per_s": round(statistics.median(rates), 1),
        "first_batch_s": round(statistics.median(first_batch), 3),
    }


def write_jpegs(folder: Path, count: int) -> None:
    """``count`` smooth random 256×256 JPEGs in ``JPEG_CLASSES`` class folders (photo-like sizes)."""
    rng = np.random.default_rng(0)
    for index in range(count):
        coarse = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        picture = Image.fromarray(coarse).resize((JPEG_SIZE, JPEG_SIZE), Image.Resampling.BICUBIC)
        path = folder / f"class_{index % JPEG_CLASSES:02d}" / f"{index:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        picture.save(path, quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-jpegs", type=int, default=1000)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "python": platform.python_version(),
        "torch": torch.__version__,
        "batch_size": BATCH_SIZE,
        "repeats": args.repeats,
    }
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(scratch) / "glyph_cache"
        spec = GlyphSpec()
        cold, cold_cpu = median_seconds(lambda: generate_glyphs(spec), args.repeats)
        load_glyphs(spec, cache)

        def from_disk() -> None:
            clear_memory_cache()
            load_glyphs(spec, cache)

        disk, _ = median_seconds(from_disk, args.repeats)
        memory, _ = median_seconds(lambda: load_glyphs(spec, cache), args.repeats)
        results["glyph_generation"] = {
            "images": spec.num_classes * spec.samples_per_class,
            "image_size": spec.image_size,
            "cold_s": round(cold, 3),
            "cold_cpu_s": round(cold_cpu, 3),
            "disk_cache_s": round(disk, 4),
            "memory_cache_s": round(memory, 6),
        }

        glyphs = build_dataset("glyphs", root=cache, split="train")
        jpeg_root = Path(scratch) / "jpegs"
        write_jpegs(jpeg_root, args.num_jpegs)
        photos = build_dataset("imagefolder", jpeg_root, "train", train_fraction=0.95)
        for name, dataset in (("glyphs_train", glyphs), ("jpeg_folder_train_224", photos)):
            results[name] = {"images": len(dataset)}
            for workers in args.workers:
                results[name][f"workers_{workers}"] = loader_throughput(
                    dataset, workers, args.repeats
                )
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # in-process loading pays for intra-op thread hand-offs
            results[name]["workers_0_torch_threads_1"] = loader_throughput(dataset, 0, args.repeats)
            torch.set_num_threads(threads)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
