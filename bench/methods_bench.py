"""Per-batch time of every miner and every loss (forward + backward) at the paper's batch shape.

Prints one JSON document: median milliseconds over ``--repeats`` calls (after warm-up) at batch 112
(56 classes × 2 samples), d = 128, L2-normalised random embeddings, on the CPU and, when available,
on CUDA. Each loss is timed on the rows of its default miner (distance with ρ = 0.4 for triplet
losses), mined once beforehand. Two references for the ρ-regularized distance miner are timed in the
same run: a straightforward per-anchor Python/numpy loop written here after the official code's
``rho_distance`` miner (Roth et al. 2020), and pytorch-metric-learning's DistanceWeightedMiner.

    .venv/bin/python bench/methods_bench.py --repeats 200 [--threads 1] [--devices cpu cuda]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_metric_learning.miners import DistanceWeightedMiner as PmlDistanceWeightedMiner

from dml_core.losses import LOSSES, build_loss
from dml_core.miners import MINERS, build_miner

NUM_CLASSES, PER_CLASS, DIM = 56, 2, 128
RHO = 0.4
DEFAULT_MINER = {"triplet": "distance", "npair": "npair", "lifted": "lifted"}


def median_ms(run: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> float:
    """Median wall time of ``run`` in milliseconds, synchronising CUDA around each call."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


class LoopRhoDistanceMiner:
    """Baseline: the official miner's structure — one Python iteration per anchor, numpy draws,
    a per-anchor GPU→CPU copy of the weights. Same distribution as our ``distance`` miner with ρ."""

    def __init__(self, rho: float, cutoff: float = 0.5, seed: int = 0) -> None:
        self.rho = rho
        self.cutoff = cutoff
        self.rng = np.random.default_rng(seed)

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> list[list[int]]:
        labels_np = labels.detach().cpu().numpy()
        x = embeddings.detach()
        dim = x.shape[1]
        squared = (x * x).sum(1)
        distances = (squared[:, None] + squared[None, :] - 2 * x @ x.T).clamp_min(0).sqrt()
        distances = distances.clamp_min(self.cutoff)
        rows = []
        for anchor in range(len(labels_np)):
            same = labels_np == labels_np[anchor]
            classmates = np.flatnonzero(same & (np.arange(len(labels_np)) != anchor))
            if len(classmates) == 0:
                continue
            positive = int(self.rng.choice(classmates))
            if self.rng.random() < self.rho:
                rows.append([anchor, anchor, positive])
                continue
            d = distances[anchor]
            log_weights = (2.0 - dim) * d.log() - (dim - 3.0) / 2 * (1 - d.pow(2) / 4).log()
            log_weights[torch.from_numpy(same).to(d.device)] = float("-inf")
            weights = torch.exp(log_weights - log_weights.max())
            probabilities = (weights / weights.sum()).cpu().numpy().astype(np.float64)
            negative = int(self.rng.choice(len(labels_np), p=probabilities / probabilities.sum()))
            rows.append([anchor, positive, negative])
        return rows


def time_device(device: torch.device, repeats: int, warmup: int) -> dict[str, dict[str, float]]:
    generator = torch.Generator().manual_seed(0)
    embeddings = F.normalize(torch.randn(NUM_CLASSES * PER_CLASS, DIM, generator=generator), dim=1)
    embeddings = embeddings.to(device)
    labels = torch.arange(NUM_CLASSES).repeat_interleave(PER_CLASS).to(device)

    miners: dict[str, float] = {}
    built = {name: build_miner(name, seed=0) for name in sorted(MINERS)}
    built[f"distance_rho{RHO}"] = build_miner("distance", rho=RHO, seed=0)
    for name, miner in built.items():
        miners[name] = median_ms(lambda m=miner: m(embeddings, labels), device, repeats, warmup)

    losses: dict[str, float] = {}
    for name in sorted(LOSSES):
        loss = build_loss(name, num_classes=NUM_CLASSES, embed_dim=DIM).to(device)
        kind = loss.miner_kind
        rows = None if kind is None else built[DEFAULT_MINER[kind]](embeddings, labels)
        if kind == "triplet":
            rows = built[f"distance_rho{RHO}"](embeddings, labels)
        leaf = embeddings.clone().requires_grad_()

        def step(loss=loss, rows=rows, leaf=leaf) -> None:
            loss(leaf, labels, rows).backward()
            leaf.grad = None
            loss.zero_grad(set_to_none=True)

        losses[name] = median_ms(step, device, repeats, warmup)

    baseline_repeats = max(5, repeats // 10)
    loop_miner = LoopRhoDistanceMiner(RHO)
    pml_miner = PmlDistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)
    references = {
        "loop_rho_distance (per-anchor Python loop)": median_ms(
            lambda: loop_miner(embeddings, labels), device, baseline_repeats, 2
        ),
        "pml DistanceWeightedMiner": median_ms(
            lambda: pml_miner(embeddings, labels), device, baseline_repeats, 2
        ),
    }
    ours = miners[f"distance_rho{RHO}"]
    ratios = {f"{name} / ours": value / ours for name, value in references.items()}
    return {"miners_ms": miners, "losses_fwd_bwd_ms": losses, "references_ms": references,
            "speedup": ratios}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op CPU threads")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu (+ cuda)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    report: dict[str, object] = {
        "batch": NUM_CLASSES * PER_CLASS,
        "classes_x_per_class": f"{NUM_CLASSES}x{PER_CLASS}",
        "dim": DIM,
        "rho": RHO,
        "repeats": args.repeats,
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    for device in devices:
        report[device] = time_device(torch.device(device), args.repeats, args.warmup)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
