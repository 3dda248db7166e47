"""Evaluation speed and memory: the full metric suite vs bare faiss kNN and pytorch-metric-learning.

Prints one JSON document. For each size N (d = 128, about 50 items per class, unit vectors around
class centres): median seconds of the full suite (``retrieval_metrics`` + ``embedding_space_metrics``),
of a bare exact faiss search with k = 101, and of pytorch-metric-learning's AccuracyCalculator
(precision_at_1, r_precision, mean_average_precision_at_r); each repeat runs in its own subprocess,
whose peak RSS is reported too. At the first size it also compares Recall@1 of the approximate
indexes with the exact one.

    .venv/bin/python bench/eval_bench.py --sizes 20000 60000 --repeats 3 [--skip-approximate]
"""

from __future__ import annotations

import argparse
import json
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
)


def synthetic_embeddings(num_items: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around random class centres; class sizes ≈ Poisson(50)."""
    rng = np.random.default_rng(seed)
    num_classes = num_items // ITEMS_PER_CLASS
    labels = rng.integers(0, num_classes, size=num_items)
    centres = rng.normal(size=(num_classes, DIM))
    points = 0.5 * centres[labels] + rng.normal(size=(num_items, DIM))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32), labels


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


def run_worker(task: str, num_items: int) -> None:
    """Run one task on fresh data in this process and print its time and peak RSS as JSON."""
    points, labels = synthetic_embeddings(num_items)
    tasks = {
        "suite": _suite,
        "bare_faiss_knn": _bare_faiss_knn,
        "pml_accuracy_calculator": _pml_accuracy_calculator,
        "approximate_hnsw": _approximate("hnsw"),
        "approximate_ivf": _approximate("ivf"),
    }
    rss_before_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    result = tasks[task](points, labels)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mib": peak_mib,
                "peak_rss_before_task_mib": rss_before_mib,
                "result": {key: float(value) for key, value in result.items()},
            }
        )
    )


def run_in_subprocess(task: str, num_items: int) -> dict:
    command = [sys.executable, __file__, "--worker", task, "--sizes", str(num_items)]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


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
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker, args.sizes[0])
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


if __name__ == "__main__":
    main()
