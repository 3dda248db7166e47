"""The fair-comparison study on ``glyphs`` (issue 8): 9 methods × 3 seeds with the ``glyphs`` preset.

    python scripts/glyphs_study.py run --jobs 2       # trains what is missing under runs/study/
    python scripts/glyphs_study.py results            # regenerates docs/RESULTS.md and docs/study.*

``run`` launches ``python -m dml_core train`` for every (method, seed) whose run directory has no
finished ``done`` event, ``--jobs`` at a time (one torch thread each). ``results`` calls
``python -m dml_core report``'s functions on the run directories and adds the correlation of the
train-split embedding metrics with test Recall@1 across all runs (Pearson and Spearman).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

from dml_core.engine.events import read_events
from dml_core.io import atomic_write_bytes
from dml_core.report import DEFAULT_METRICS, summarise, to_csv, to_markdown

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "study"
SEEDS = (0, 1, 2)
METHODS: dict[str, list[str]] = {
    "margin": ["--loss", "margin", "--miner", "distance"],
    "triplet": ["--loss", "triplet", "--miner", "distance"],
    "contrastive": ["--loss", "contrastive", "--miner", "distance"],
    "multisimilarity": ["--loss", "multisimilarity", "--miner", "none"],
    "triplet-rho0.2": ["--loss", "triplet", "--miner", "distance", "--rho", "0.2"],
    "contrastive-rho0.2": ["--loss", "contrastive", "--miner", "distance", "--rho", "0.2"],
    "margin-rho0.1": ["--loss", "margin", "--miner", "distance", "--rho", "0.1"],
    "margin-rho0.2": ["--loss", "margin", "--miner", "distance", "--rho", "0.2"],
    "margin-rho0.35": ["--loss", "margin", "--miner", "distance", "--rho", "0.35"],
}
PAPER_CUB_CORRELATIONS = {"pi_intra": 0.25, "pi_inter": -0.16, "pi_ratio": 0.79, "rho@2": -0.80}
"""Roth et al. 2020, Fig. 3 (CUB200): correlation of each train-set metric with test Recall@1."""


def finished(run_dir: Path) -> bool:
    events, _ = read_events(run_dir / "events.jsonl")
    return any(e["kind"] == "done" and e.get("reason") == "finished" for e in events)


def command(method: str, seed: int, run_dir: Path) -> list[str]:
    base = [sys.executable, "-m", "dml_core", "train", "--preset", "glyphs", "--no-progress"]
    if (run_dir / "last.safetensors").exists():
        return [
            sys.executable,
            "-m",
            "dml_core",
            "train",
            "--resume",
            str(run_dir),
            "--no-progress",
        ]
    return [*base, *METHODS[method], "--seed", str(seed), "--out", str(run_dir)]


def run(jobs: int) -> None:
    pending = [
        (method, seed, RUNS / f"{method}-seed{seed}")
        for seed in SEEDS
        for method in METHODS
        if not finished(RUNS / f"{method}-seed{seed}")
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    running: list[tuple[str, subprocess.Popen]] = []
    while pending or running:
        while pending and len(running) < jobs:
            method, seed, run_dir = pending.pop(0)
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            log = open(run_dir.parent / f"{run_dir.name}.log", "a")  # noqa: SIM115
            process = subprocess.Popen(
                command(method, seed, run_dir), stdout=log, stderr=log, env=env
            )
            running.append((run_dir.name, process))
            print(f"started {run_dir.name}", flush=True)
        time.sleep(5)
        for name, process in list(running):
            if process.poll() is not None:
                running.remove((name, process))
                print(f"{name}: exit {process.returncode}", flush=True)


def correlations(runs: list) -> list[dict]:
    """Across runs: each train-split metric (fair protocol: last epoch) against test Recall@1."""
    recall = np.array([r.history[-1]["test/recall@1"] for r in runs])
    rows = []
    for metric in ("rho@2", "pi_ratio", "pi_intra", "pi_inter"):
        values = np.array([r.history[-1][f"train/{metric}"] for r in runs])
        pearson = stats.pearsonr(values, recall)
        spearman = stats.spearmanr(values, recall)
        rows.append(
            {
                "metric": metric,
                "pearson": float(pearson.statistic),
                "pearson_p": float(pearson.pvalue),
                "spearman": float(spearman.statistic),
                "spearman_p": float(spearman.pvalue),
                "paper_cub200": PAPER_CUB_CORRELATIONS[metric],
            }
        )
    return rows


def results(out: Path) -> None:
    metrics = [*DEFAULT_METRICS, "train/pi_intra", "train/pi_inter"]
    rows, runs = summarise([RUNS], metrics)
    runs = [r for r in runs if r.history]
    table = to_markdown(rows, metrics)
    correlation_rows = correlations(runs)
    lines = [
        "| train-split metric (last epoch) | Pearson r (p) | Spearman ρ (p) | paper, CUB200 |",
        "|---|---|---|---|",
    ]
    for row in correlation_rows:
        lines.append(
            f"| {row['metric']} | {row['pearson']:+.2f} ({row['pearson_p']:.2g}) | "
            f"{row['spearman']:+.2f} ({row['spearman_p']:.2g}) | {row['paper_cub200']:+.2f} |"
        )
    atomic_write_bytes(out / "study_table.md", table.encode())
    atomic_write_bytes(out / "study_correlations.md", ("\n".join(lines) + "\n").encode())
    atomic_write_bytes(out / "study.csv", to_csv(rows).encode())
    atomic_write_bytes(
        out / "study_correlations.json", json.dumps(correlation_rows, indent=2).encode()
    )
    print(table)
    print("\n".join(lines))
    print(f"{len(runs)} runs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run")
    run_parser.add_argument("--jobs", type=int, default=2)
    results_parser = commands.add_parser("results")
    results_parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    if args.command == "run":
        run(args.jobs)
    else:
        results(args.out)


if __name__ == "__main__":
    main()
