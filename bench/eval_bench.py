"""Evaluation speed and memory: the full metric suite vs bare faiss kNN and pytorch-metric-learning.

Prints one JSON document. For each size N (d = 128, about 50 items per class, unit vectors around
class centres): median seconds of the full suite (``retrieval_metrics`` + ``embedding_space_metrics``),
of a bare exact faiss search with k = 101, and of pytorch-metric-learning's AccuracyCalculator
(precision_at_1, r_precision, mean_average_precision_at_r); each repeat runs in its own subprocess,
whose peak RSS is reported too. At the first size it also compares Recall@1 of the approximate
indexes with the exact one.

    .venv/bin/python bench/eval_bench.py --sizes 20000 60000 --repeats 3 [--skip-approximate]

``--scale`` (issue 28, scale item 1) instead runs the whole evaluation (``retrieval_metrics`` with
NMI and F1, and ``embedding_space_metrics``) exactly and with ``approximate="hnsw"`` and ``"ivf"``
at each size (default 100,000 and 200,000), one fresh process per task: wall and CPU seconds, peak
RSS, the metrics and their approximate − exact differences; then the log-log slope of time and RSS
between the two largest sizes and the extrapolation to ``--extrapolate-to`` (1,000,000); with
``--direct N`` the approximate paths also run at N items, and are compared with the extrapolation.

    .venv/bin/python bench/eval_bench.py --scale --sizes 100000 200000 --direct 1000000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import faiss
import numpy as np
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from dml_core.metrics import embedding_space_metrics, retrieval_metrics

DIM = 128
ITEMS_PER_CLASS = 50
BARE_KNN_K = 101
TASKS = (
    "suite",
    "bare_faiss_knn",
    "pml_accuracy_calculator",
    "approximate_hnsw",
    "approximate_ivf",
    "full_exact",
    "full_hnsw",
    "full_ivf",
)
COMPARED = ("recall@1", "recall@8", "map@r", "r_precision", "nmi", "f1")
BLOCK_ROWS = 100_000
CENTRE_SCALE_DECAYING = 0.13
NOISE_DECAY = np.arange(1, DIM + 1) ** -0.5


def synthetic_embeddings(
    num_items: int, seed: int = 0, *, decaying: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around random class centres; class sizes ≈ Poisson(50).

    Default: 0.5·centre + isotropic N(0, I) noise (every direction as noisy: intrinsic dimension
    128, the hardest case for an approximate index). ``decaying``: 0.13·centre + noise whose
    j-th coordinate has standard deviation j^(−1/2) (about 18 effective dimensions, as trained
    embeddings' decaying spectra have; exact Recall@1 0.88 at 20k)."""
    rng = np.random.default_rng(seed)
    num_classes = num_items // ITEMS_PER_CLASS
    labels = rng.integers(0, num_classes, size=num_items)
    centres = rng.normal(size=(num_classes, DIM))
    centre_scale, noise_scale = (CENTRE_SCALE_DECAYING, NOISE_DECAY) if decaying else (0.5, 1.0)
    points = np.empty((num_items, DIM), dtype=np.float32)
    for start in range(0, num_items, BLOCK_ROWS):  # float64 a block at a time (peak RSS)
        rows = slice(start, start + BLOCK_ROWS)
        noise = rng.normal(size=(len(labels[rows]), DIM)) * noise_scale
        block = centre_scale * centres[labels[rows]] + noise
        points[rows] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return points, labels


def _suite(points: np.ndarray, labels: np.ndarray) -> dict:
    start = time.perf_counter()
    retrieval = retrieval_metrics(points, labels)
    middle = time.perf_counter()
    embedding_space = embedding_space_metrics(points, labels)
    split = {
        "seconds_retrieval_metrics": middle - start,
        "seconds_embedding_space_metrics": time.perf_counter() - middle,
    }
    return {**retrieval, **embedding_space, **split}


def _bare_faiss_knn(points: np.ndarray, labels: np.ndarray) -> dict:
    index = faiss.IndexFlatL2(points.shape[1])
    index.add(points)
    index.search(points, BARE_KNN_K)
    return {}


def _pml_accuracy_calculator(points: np.ndarray, labels: np.ndarray) -> dict:
    calculator = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        k="max_bin_count",
    )
    return calculator.get_accuracy(
        torch.from_numpy(points), torch.from_numpy(labels), ref_includes_query=True
    )


def _approximate(index: str) -> Callable[[np.ndarray, np.ndarray], dict]:
    def run(points: np.ndarray, labels: np.ndarray) -> dict:
        return retrieval_metrics(points, labels, ks=(1,), approximate=index)

    return run


def _full(index: str | None) -> Callable[[np.ndarray, np.ndarray], dict]:
    """The whole evaluation, as ``evaluate`` runs it on a test split (``split_metrics``)."""

    def run(points: np.ndarray, labels: np.ndarray) -> dict:
        start = time.perf_counter()
        retrieval = retrieval_metrics(points, labels, approximate=index)
        middle = time.perf_counter()
        embedding_space = embedding_space_metrics(points, labels)
        split = {
            "seconds_retrieval_metrics": middle - start,
            "seconds_embedding_space_metrics": time.perf_counter() - middle,
        }
        return {**retrieval, **embedding_space, **split}

    return run


def run_worker(task: str, num_items: int) -> None:
    """Run one task on fresh data in this process and print its time and peak RSS as JSON
    (the ``full_*`` tasks on the ``decaying`` data, the others on the isotropic data)."""
    points, labels = synthetic_embeddings(num_items, decaying=task.startswith("full_"))
    tasks = {
        "suite": _suite,
        "bare_faiss_knn": _bare_faiss_knn,
        "pml_accuracy_calculator": _pml_accuracy_calculator,
        "approximate_hnsw": _approximate("hnsw"),
        "approximate_ivf": _approximate("ivf"),
        "full_exact": _full(None),
        "full_hnsw": _full("hnsw"),
        "full_ivf": _full("ivf"),
    }
    rss_before_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = os.getloadavg()[0]
    start, cpu_start = time.perf_counter(), time.process_time()
    result = tasks[task](points, labels)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": time.process_time() - cpu_start,
                "load_average_1min": [load, os.getloadavg()[0]],
                "peak_rss_mib": peak_mib,
                "peak_rss_before_task_mib": rss_before_mib,
                "result": {key: float(value) for key, value in result.items()},
            }
        )
    )


def run_in_subprocess(task: str, num_items: int) -> dict:
    command = [sys.executable, __file__, "--worker", task, "--sizes", str(num_items)]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    run = json.loads(completed.stdout.strip().splitlines()[-1])
    print(json.dumps({"task": task, "size": num_items, **run}), file=sys.stderr, flush=True)
    return run


def summarise(runs: list[dict]) -> dict:
    return {
        "median_seconds": statistics.median(run["seconds"] for run in runs),
        "all_seconds": [round(run["seconds"], 3) for run in runs],
        "peak_rss_mib": max(run["peak_rss_mib"] for run in runs),
        "peak_rss_before_task_mib": max(run["peak_rss_before_task_mib"] for run in runs),
        "result": runs[-1]["result"],
    }


def measure_size(num_items: int, repeats: int) -> dict:
    """Repeats interleave the three tasks, so a change of machine load hits all of them alike."""
    tasks = ("suite", "bare_faiss_knn", "pml_accuracy_calculator")
    runs: dict[str, list[dict]] = {task: [] for task in tasks}
    for _ in range(repeats):
        for task in tasks:
            runs[task].append(run_in_subprocess(task, num_items))
    timings = {task: summarise(runs[task]) for task in tasks}
    for baseline, key in (("bare_faiss_knn", "bare_knn"), ("pml_accuracy_calculator", "pml")):
        ratios = [
            suite["seconds"] / other["seconds"]
            for suite, other in zip(runs["suite"], runs[baseline], strict=True)
        ]
        timings[f"suite_over_{key}_median_of_paired_ratios"] = statistics.median(ratios)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 60000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-approximate", action="store_true", help="skip the HNSW/IVF check")
    parser.add_argument("--worker", choices=TASKS, help=argparse.SUPPRESS)
    parser.add_argument("--scale", action="store_true", help="exact vs approximate, extrapolated")
    parser.add_argument("--extrapolate-to", type=int, default=1_000_000)
    parser.add_argument("--direct", type=int, nargs="*", default=[], help="run approximate at N")
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker, args.sizes[0])
        return
    if args.scale:
        print(json.dumps(measure_scale(args), indent=2))
        return
    report: dict = {"dim": DIM, "items_per_class": ITEMS_PER_CLASS, "sizes": {}}
    for num_items in args.sizes:
        report["sizes"][str(num_items)] = measure_size(num_items, args.repeats)
    if not args.skip_approximate:
        report["approximate"] = compare_approximate(args.sizes[0], report)
    print(json.dumps(report, indent=2))


def compare_approximate(first: int, report: dict) -> dict:
    """Recall@1 (and time of ``retrieval_metrics``) with the HNSW and IVF indexes vs exact."""
    exact_recall = report["sizes"][str(first)]["suite"]["result"]["recall@1"]
    approximate = {"size": first, "exact_recall@1": exact_recall}
    for index in ("hnsw", "ivf"):
        run = run_in_subprocess(f"approximate_{index}", first)
        approximate[index] = {
            "recall@1": run["result"]["recall@1"],
            "retrieval_metrics_seconds": run["seconds"],
        }
    return approximate


def _differences(approximate: dict, exact: dict) -> dict:
    return {key: approximate[key] - exact[key] for key in COMPARED}


def _log_log(sizes: list[int], values: list[float], target: int) -> dict:
    """Slope of log(value) on log(N) between the two largest sizes, and the value at ``target``."""
    (n1, v1), (n2, v2) = list(zip(sizes, values, strict=True))[-2:]
    slope = math.log(v2 / v1) / math.log(n2 / n1)
    return {"slope": slope, "at_target": v2 * (target / n2) ** slope}


def measure_scale(args: argparse.Namespace) -> dict:
    """Exact vs HNSW vs IVF over ``--sizes`` (``--repeats`` fresh processes each, medians)."""
    sizes = sorted(args.sizes)
    report: dict = {
        "dim": DIM,
        "items_per_class": ITEMS_PER_CLASS,
        "cpu_count": os.cpu_count(),
        "sizes": {},
    }
    for num_items in sizes:
        entry = {}
        for task in ("full_exact", "full_hnsw", "full_ivf"):
            runs = [run_in_subprocess(task, num_items) for _ in range(args.repeats)]
            entry[task] = summarise(runs)
            entry[task]["median_cpu_seconds"] = statistics.median(r["cpu_seconds"] for r in runs)
            entry[task]["load_average_1min"] = [r["load_average_1min"] for r in runs]
        exact = entry["full_exact"]["result"]
        for index in ("hnsw", "ivf"):
            entry[f"{index}_minus_exact"] = _differences(entry[f"full_{index}"]["result"], exact)
        report["sizes"][str(num_items)] = entry
        print(json.dumps({num_items: entry}), file=sys.stderr, flush=True)  # progress
    target = args.extrapolate_to
    extrapolated: dict = {"to": target}
    for task in ("full_exact", "full_hnsw", "full_ivf"):
        entries = [report["sizes"][str(n)][task] for n in sizes]
        extrapolated[task] = {
            key: _log_log(sizes, [e[key] for e in entries], target)
            for key in ("median_seconds", "median_cpu_seconds", "peak_rss_mib")
        }
    report["extrapolated"] = extrapolated
    for num_items in args.direct:
        direct = {}
        for task in ("full_hnsw", "full_ivf"):
            run = run_in_subprocess(task, num_items)
            direct[task] = summarise([run]) | {"median_cpu_seconds": run["cpu_seconds"]}
            direct[task]["load_average_1min"] = run["load_average_1min"]
        direct["hnsw_minus_ivf"] = _differences(
            direct["full_hnsw"]["result"], direct["full_ivf"]["result"]
        )
        report.setdefault("direct", {})[str(num_items)] = direct
        print(json.dumps({num_items: direct}), file=sys.stderr, flush=True)
    return report


if __name__ == "__main__":
    main()
