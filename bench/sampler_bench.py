"""Time to draw one epoch of batches with each sampler at CUB size (5,864 items, 100 classes).

Embedding samplers get random unit 128-d embeddings (their cost does not depend on the values).
Prints JSON: median seconds per epoch over ``--repeats`` epochs, per sampler.
Usage: ``python bench/sampler_bench.py [--repeats 5] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from dml_core.samplers import SAMPLERS, build_sampler


def epoch_seconds(name: str, labels: np.ndarray, args: argparse.Namespace) -> list[float]:
    sampler = build_sampler(name, labels, args.batch_size, args.samples_per_class, seed=0)
    if sampler.needs_embeddings:
        embeddings = torch.randn(len(labels), args.embed_dim, device=args.device)
        sampler.update_embeddings(torch.nn.functional.normalize(embeddings, dim=1))
    times = []
    for epoch in range(args.repeats):
        sampler.set_epoch(epoch)
        start = time.perf_counter()
        batches = list(sampler)
        times.append(time.perf_counter() - start)
        assert len(batches) == len(sampler)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--items", type=int, default=5864)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=112)
    parser.add_argument("--samples-per-class", type=int, default=2)
    parser.add_argument("--embed-dim", type=int, default=128)
    args = parser.parse_args()
    labels = np.sort(np.random.default_rng(0).integers(0, args.classes, args.items))
    results = {}
    for name in sorted(SAMPLERS):
        times = epoch_seconds(name, labels, args)
        results[name] = {"median_s_per_epoch": statistics.median(times), "runs": len(times)}
    print(json.dumps({"setup": vars(args), "torch_threads": torch.get_num_threads(), **results}))


if __name__ == "__main__":
    main()
