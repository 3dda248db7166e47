"""Speed of the diagonal-lines toy (issue 6): one 200-iteration run, the 4-mode study, and two
references, printed as JSON.

- ``run``: ``toy.run_toy`` (the Trainer, the ``all`` miner, the contrastive loss), median over runs.
- ``study``: ``toy.run_study`` over every mode and ``--study-seeds`` seeds, in 1 and in 2 worker
  processes (``--study-workers``); its CPU time counts the workers' (reaped when the pool closes).
- ``direct_loop``: the same computation written as a bare vectorised torch loop without the
  Trainer (the floor the Trainer's per-step overhead is measured against).
- ``published_baseline``: the published script's approach as reconstructed here (its code is not
  copied): each step enumerates the batch's triplets anchor by anchor in Python, with one set of
  torch ops per anchor, before averaging over all triplets.

Wall time and process CPU time are both reported: on a shared machine the wall time includes the
time other processes hold the cores, the CPU time does not. Run:
``python bench/toy_bench.py [--runs 5] [--study-seeds 20] [--baseline-runs 3] [--study-workers 1 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F

from toy import TOY_MODES, ToySettings, run_study, run_toy, toy_data
from toy.api import BATCH_SIZE, single_thread

MARGIN = 0.1


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (a study's worker processes)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(function: Callable[[], Any], repeats: int) -> dict[str, float]:
    """Median and all of wall and CPU seconds over ``repeats`` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), cpu_seconds()
        function()
        walls.append(time.perf_counter() - wall)
        cpus.append(cpu_seconds() - cpu)
    return {
        "median_wall_s": statistics.median(walls),
        "median_cpu_s": statistics.median(cpus),
        "wall_s": walls,
        "cpu_s": cpus,
    }


def toy_network() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(2, 30),
        torch.nn.ReLU(),
        torch.nn.Linear(30, 30),
        torch.nn.ReLU(),
        torch.nn.Linear(30, 2),
    )


def vectorised_loss(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.shape[0], dtype=torch.bool)
    anchors, positives, negatives = ((same & ~eye)[:, :, None] & ~same[:, None, :]).nonzero().T
    pull = (embeddings[anchors] - embeddings[positives]).norm(dim=1).mean()
    push = torch.relu(MARGIN - (embeddings[anchors] - embeddings[negatives]).norm(dim=1)).mean()
    return pull + push


def per_anchor_loss(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The same loss with the triplets enumerated anchor by anchor in Python (one set of torch ops
    per anchor, as the published script does), then averaged over all triplets."""
    label_list = labels.tolist()
    pulls, pushes = [], []
    for anchor, anchor_label in enumerate(label_list):
        positives = [i for i, y in enumerate(label_list) if y == anchor_label and i != anchor]
        negatives = [i for i, y in enumerate(label_list) if y != anchor_label]
        if not positives or not negatives:
            continue
        pairs = torch.cartesian_prod(torch.tensor(positives), torch.tensor(negatives))
        anchor_embedding = embeddings[anchor][None, :]
        pulls.append((anchor_embedding - embeddings[pairs[:, 0]]).norm(dim=1))
        pushes.append(torch.relu(MARGIN - (anchor_embedding - embeddings[pairs[:, 1]]).norm(dim=1)))
    return torch.cat(pulls).mean() + torch.cat(pushes).mean()


def plain_training(
    loss_function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], iterations: int
) -> None:
    """The published run (base mode) without the Trainer: MLP, Adam 0.03, 24 of 60 points per step."""
    data = toy_data(0)
    points = torch.from_numpy(data["train_points"])
    labels = torch.from_numpy(data["train_labels"])
    torch.manual_seed(0)
    network = toy_network()
    optimizer = torch.optim.Adam(network.parameters(), lr=0.03)
    for _ in range(iterations):
        batch = torch.randperm(points.shape[0])[:BATCH_SIZE]
        loss = loss_function(F.normalize(network(points[batch]), dim=1), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--study-seeds", type=int, default=20)
    parser.add_argument("--baseline-runs", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--study-workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    settings = ToySettings(iterations=args.iterations)
    run_toy(settings)  # warm-up: imports, allocator, faiss
    sample = F.normalize(torch.randn(BATCH_SIZE, 2), dim=1), torch.arange(BATCH_SIZE) % 5
    torch.testing.assert_close(per_anchor_loss(*sample), vectorised_loss(*sample))
    report: dict[str, Any] = {
        "machine": {"cpu_count": os.cpu_count(), "load_average_1min_at_start": os.getloadavg()[0]},
        "iterations": args.iterations,
    }
    report["run"] = {
        mode: timed(lambda m=mode: run_toy(replace(settings, mode=m)), args.runs)
        for mode in TOY_MODES
    }
    with single_thread():
        report["direct_loop"] = timed(
            lambda: plain_training(vectorised_loss, args.iterations), args.runs
        )
        report["published_baseline"] = timed(
            lambda: plain_training(per_anchor_loss, args.iterations), args.baseline_runs
        )
    if args.study_seeds > 0:
        report["study"] = {"modes": len(TOY_MODES), "seeds": args.study_seeds}
        for workers in args.study_workers:
            report["study"][f"workers_{workers}"] = timed(
                lambda w=workers: run_study(TOY_MODES, args.study_seeds, settings, workers=w), 1
            )
    base = report["run"]["base"]
    report["ratios"] = {
        "published_baseline_over_run_wall": report["published_baseline"]["median_wall_s"]
        / base["median_wall_s"],
        "published_baseline_over_run_cpu": report["published_baseline"]["median_cpu_s"]
        / base["median_cpu_s"],
        "run_over_direct_loop_cpu": base["median_cpu_s"] / report["direct_loop"]["median_cpu_s"],
    }
    report["machine"]["load_average_1min_at_end"] = os.getloadavg()[0]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
