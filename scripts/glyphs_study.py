"""The study on ``glyphs`` (issue 15): 2 regimes × 9 methods × 5 seeds, each run to convergence.

    python scripts/glyphs_study.py run --regime finetune --shard 1/2 --jobs 1
    python scripts/glyphs_study.py results          # docs/RESULTS.md from docs/study/ alone

Regimes (by preset): ``finetune`` fine-tunes the pretrained glyph backbone
(``checkpoints/glyphs-backbone.safetensors``, made by ``scripts/pretrain_glyphs_backbone.py``)
with the ``glyphs-finetune`` preset; ``scratch`` trains the small CNN from scratch with the
``glyphs`` preset. Both hold out 20 % of the train classes for validation, select the epoch by
validation MAP@R and stop by the rule of ``dml_core.engine.stopping`` (no new best validation
MAP@R over the last quarter of the evaluations), at most at the regime's epoch cap.

``run`` trains the (method, seed) tasks of its shard that have no summary yet, seed by seed, under
``runs/study/<regime>/<method>-seed<k>/`` (not in git): a run with a resumable state continues
with the trainer's ``--resume``, a run that has converged or reached its cap is only summarised.
The runner watches each run's ``eval`` events and stops the trainer (SIGTERM, a clean stop) as
soon as the rule holds. Each finished run leaves ``docs/study/<regime>/<method>-seed<k>.json``
(config, command, stop reason, evaluation history; a few KB), which is all ``results`` reads.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from dml_core.engine.events import read_events
from dml_core.engine.stopping import last_quarter_gain, should_stop
from dml_core.io import atomic_write, atomic_write_bytes, atomic_write_json
from dml_core.statistics import (
    PairedDifference,
    combine_verdicts,
    method_mean_correlation,
    paired_difference,
    trajectory_correlations,
    verdict,
)

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "study"
STUDY = ROOT / "docs" / "study"
SUMMARY_FORMAT = 2
SEEDS = (0, 1, 2, 3, 4)
SELECTION_METRIC = "val/map@r"
"""Validation Recall@1 saturates near 0.95 on the 20 held-out fine-tune classes (its epoch-to-epoch
changes are within its ±0.008 sampling error), so epochs are selected and runs stopped on
validation MAP@R, which keeps rising while test Recall@1 does."""
TEST_METRIC = "test/recall@1"
TRAIN_METRIC = "train/recall@1"
SPECTRUM_METRIC = "train/rho@2"
"""What ρ-regularization acts on: lower is a flatter spectrum (docs/DESIGN.md §3)."""
SUMMARY_METRICS = (
    "val/map@r",
    "val/recall@1",
    "test/recall@1",
    "test/recall@4",
    "test/map@r",
    "test/nmi",
    "train/recall@1",
    "train/rho@2",
    "train/pi_ratio",
    "train/pi_intra",
    "train/pi_inter",
)
"""Metrics a summary keeps per evaluation (those the run recorded)."""

METHODS: dict[str, list[str]] = {
    "margin": ["--loss", "margin", "--miner", "distance"],
    "margin-rho0.15": ["--loss", "margin", "--miner", "distance", "--rho", "0.15"],
    "margin-rho0.35": ["--loss", "margin", "--miner", "distance", "--rho", "0.35"],
    "triplet": ["--loss", "triplet", "--miner", "distance"],
    "triplet-rho0.35": ["--loss", "triplet", "--miner", "distance", "--rho", "0.35"],
    "contrastive": ["--loss", "contrastive", "--miner", "distance"],
    "contrastive-rho0.35": ["--loss", "contrastive", "--miner", "distance", "--rho", "0.35"],
    "multisimilarity": ["--loss", "multisimilarity", "--miner", "none"],
    "softmax": ["--loss", "softmax", "--miner", "none"],
}
"""ρ at the official push probabilities: 0.35 (CUB200, CARS196) and 0.15 (SOP)."""

BASE_METHODS = ("margin", "triplet", "contrastive", "multisimilarity", "softmax")
"""Claim 1 compares these (no ρ)."""
RHO_PAIRS = (
    ("margin-rho0.35", "margin"),
    ("triplet-rho0.35", "triplet"),
    ("contrastive-rho0.35", "contrastive"),
)
"""Claim 2 at the paper's push probability for CUB200/CARS196; its verdict rests on these."""
EXTRA_RHO_PAIRS = (("margin-rho0.15", "margin"),)
"""Shown next to claim 2, not part of its verdict."""
EQUIVALENCE_MARGIN = 0.02
"""Claim 1: two methods are alike when their paired test Recall@1 difference is within ±0.02."""
CORRELATED_METRICS = {"train/rho@2": "less", "train/pi_ratio": "greater"}
"""Claim 3: the sign the paper reports (Fig. 3: lower ρ@2, higher π_ratio ↔ higher Recall@1)."""
CONTEXT_METRICS = ("train/pi_intra", "train/pi_inter")
PAPER_CUB_SPEARMAN = {
    "train/rho@2": -0.80,
    "train/pi_ratio": 0.79,
    "train/pi_intra": 0.25,
    "train/pi_inter": -0.16,
}
"""Roth et al. 2020, Fig. 3 (CUB200): correlation of each train-split metric with test Recall@1."""


@dataclass(frozen=True)
class Regime:
    """One training regime of the study: a preset plus the study's protocol flags."""

    preset: str
    flags: tuple[str, ...]
    min_epochs: int
    description: str
    caveat: str = ""
    """What the page must say about the regime beyond its description (checked by a test)."""

    @property
    def epoch_cap(self) -> int:
        return int(self.flags[self.flags.index("--epochs") + 1])


REGIMES = {
    "finetune": Regime(
        preset="glyphs-finetune",
        flags=(
            "--val-classes",
            "0.2",
            "--epochs",
            "20",
            "--eval-every",
            "1",
            "--best-metric",
            "map@r",
        ),
        min_epochs=8,
        description=(
            "fine-tunes the small CNN pretrained with normalised softmax on 400 other glyph "
            "classes (`checkpoints/glyphs-backbone.safetensors`), frozen BatchNorm, small "
            "learning rate"
        ),
        caveat=(
            "**Seed 0 is not like the others.** The backbone was pretrained with seed 0 (the "
            "pretraining script's default), so at seed 0 the new embedding head starts exactly "
            "where the pretraining's head started, the head its trunk learnt with: for every "
            "method seed 0 starts above seeds 1–4 (see the curves) and has the best test "
            "Recall@1. Pairing by seed cancels this in every difference below; it stays in the "
            "method means and widens the bootstrap of the correlations."
        ),
    ),
    "scratch": Regime(
        preset="glyphs",
        flags=(
            "--val-classes",
            "0.2",
            "--epochs",
            "40",
            "--eval-every",
            "2",
            "--best-metric",
            "map@r",
        ),
        # Half the cap: with 4 evaluations the rule's patience is one evaluation, and a run still
        # learning (test Recall@1 0.54 → 0.56) stopped on a 1e-6 near-tie of validation MAP@R.
        min_epochs=20,
        description="trains the small CNN from random initialisation (Adam 1e-3)",
    ),
}


# --- tasks, run directories and summaries --------------------------------------------------------


@dataclass(frozen=True)
class Task:
    regime: str
    method: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.method}-seed{self.seed}"

    def run_dir(self, runs: Path) -> Path:
        return runs / self.regime / self.name

    def summary_path(self, study: Path) -> Path:
        return study / self.regime / f"{self.name}.json"


def all_tasks(regime: str) -> list[Task]:
    """Seed-major order, so a partial study holds complete seeds (what the pairing needs)."""
    return [Task(regime, method, seed) for seed in SEEDS for method in METHODS]


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` with 1 ≤ i ≤ n."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard expects i/n such as 1/4, got {text!r}") from None
    if not 1 <= index <= count:
        raise ValueError(f"--shard i/n needs 1 <= i <= n, got {text!r}")
    return index, count


def shard(tasks: Sequence[Task], index: int, count: int) -> list[Task]:
    """Every ``count``-th task starting at the ``index``-th (1-based)."""
    return list(tasks[index - 1 :: count])


def eval_history(run_dir: Path) -> list[dict[str, Any]]:
    """Evaluation rows from ``events.jsonl``, one per epoch (a resumed run's repeat wins)."""
    events, _ = read_events(run_dir / "events.jsonl")
    rows: dict[int, dict[str, Any]] = {}
    for event in events:
        if event["kind"] == "eval" and event.get("metrics"):
            rows[event["epoch"]] = {"epoch": event["epoch"], **event["metrics"]}
    return [rows[epoch] for epoch in sorted(rows)]


def stopping_point(history: list[dict[str, Any]], regime: Regime) -> int | None:
    """Number of evaluations after which the rule first held, else None."""
    for count in range(1, len(history) + 1):
        if should_stop(history[:count], SELECTION_METRIC, min_epochs=regime.min_epochs):
            return count
    return None


def completion(run_dir: Path, regime: Regime) -> tuple[str, list[dict[str, Any]]] | None:
    """(stop reason, history up to the stop) of a run that is over, else None."""
    history = eval_history(run_dir)
    stop = stopping_point(history, regime)
    if stop is not None:
        return "converged", history[:stop]
    events, _ = read_events(run_dir / "events.jsonl")
    if any(e["kind"] == "done" and e.get("reason") == "finished" for e in events):
        return "epoch cap", history
    return None


def columns(history: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """The summary's history: one list per metric (5 significant digits), epoch first."""
    kept = ["epoch", *(m for m in SUMMARY_METRICS if any(m in row for row in history))]

    def compact(value: Any) -> Any:
        if value is None or not math.isfinite(value):
            return None
        return value if isinstance(value, int) else float(f"{value:.5g}")

    return {m: [compact(row.get(m)) for row in history] for m in kept}


def new_run_command(task: Task, run_dir: Path, extra: Sequence[str] = ()) -> list[str]:
    regime = REGIMES[task.regime]
    return [
        "python",
        "-m",
        "dml_core",
        "train",
        "--preset",
        regime.preset,
        *regime.flags,
        *METHODS[task.method],
        "--seed",
        str(task.seed),
        *extra,
        "--out",
        str(run_dir),
        "--no-progress",
    ]


def file_sha256(path: str | None) -> str | None:
    """SHA-256 of the pretrained weights a run started from (None for a run from scratch), so a
    summary says which backbone it belongs to."""
    if not path or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_summary(task: Task, runs: Path, study: Path, extra: Sequence[str] = ()) -> bool:
    """Summarise a run that is over into ``docs/study``; False if it is not over."""
    run_dir = task.run_dir(runs)
    over = completion(run_dir, REGIMES[task.regime])
    if over is None:
        return False
    reason, history = over
    events, _ = read_events(run_dir / "events.jsonl")
    seconds = sum(e.get("seconds", 0.0) for e in events if e["kind"] == "epoch")
    command = new_run_command(task, Path("runs/study") / task.regime / task.name, extra)
    config = json.loads((run_dir / "config.json").read_text())
    summary = {
        "format": SUMMARY_FORMAT,
        "regime": task.regime,
        "method": task.method,
        "seed": task.seed,
        "stop": reason,
        "stopping_rule": {
            "metric": SELECTION_METRIC,
            "min_epochs": REGIMES[task.regime].min_epochs,
            "last_fraction": 0.25,
        },
        "train_seconds": round(seconds, 1),
        "command": shlex.join(command),
        "config": config,
        "pretrained_sha256": file_sha256(config.get("pretrained")),
        "history": columns(history),
    }
    atomic_write_json(task.summary_path(study), summary)
    return True


def trainer_command(task: Task, runs: Path, extra: Sequence[str]) -> list[str]:
    """Resume a run with a resumable state, else start it afresh (a directory without one is
    removed: it holds nothing to continue from)."""
    run_dir = task.run_dir(runs)
    if (run_dir / "last.safetensors").is_file() and (run_dir / "train_state.pt").is_file():
        return [
            sys.executable,
            "-m",
            "dml_core",
            "train",
            "--resume",
            str(run_dir),
            "--no-progress",
        ]
    if run_dir.exists():
        shutil.rmtree(run_dir)
    return [sys.executable, *new_run_command(task, run_dir, extra)[1:]]


@dataclass
class Running:
    task: Task
    process: subprocess.Popen
    stop_sent: bool = False
    log: Any = field(default=None, repr=False)


def run(
    regime: str,
    shard_text: str,
    jobs: int,
    *,
    runs: Path = RUNS,
    study: Path = STUDY,
    extra: Sequence[str] = (),
    poll_seconds: float = 5.0,
) -> int:
    """Train and summarise the shard's missing tasks; returns how many remain unsummarised."""
    index, count = parse_shard(shard_text)
    pending = [
        t for t in shard(all_tasks(regime), index, count) if not t.summary_path(study).exists()
    ]
    pending = [t for t in pending if not write_summary(t, runs, study, extra)]
    print(f"{regime} shard {index}/{count}: {len(pending)} run(s) to train", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    running: list[Running] = []
    while pending or running:
        while pending and len(running) < jobs:
            task = pending.pop(0)
            command = trainer_command(task, runs, extra)
            log_path = task.run_dir(runs).parent / f"{task.name}.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(log_path, "a")  # noqa: SIM115 (closed when the run ends)
            process = subprocess.Popen(command, stdout=log, stderr=log, env=env, cwd=ROOT)
            running.append(Running(task, process, log=log))
            print(f"started {task.name}: {shlex.join(command[1:])}", flush=True)
        time.sleep(poll_seconds)
        for item in list(running):
            run_dir = item.task.run_dir(runs)
            converged = stopping_point(eval_history(run_dir), REGIMES[regime]) is not None
            if converged and not item.stop_sent and item.process.poll() is None:
                item.process.send_signal(signal.SIGTERM)  # the trainer stops cleanly
                item.stop_sent = True
            if item.process.poll() is not None:
                running.remove(item)
                item.log.close()
                done = write_summary(item.task, runs, study, extra)
                state = "summarised" if done else "not over (resumes next time)"
                print(f"{item.task.name}: exit {item.process.returncode}, {state}", flush=True)
    remaining = [t for t in all_tasks(regime) if not t.summary_path(study).exists()]
    print(f"{regime}: {len(remaining)} of {len(all_tasks(regime))} run(s) remain", flush=True)
    return len(remaining)


# --- results ------------------------------------------------------------------------------------


@dataclass
class RunSummary:
    """One finished run as ``results`` sees it: values at the epoch selected on validation."""

    method: str
    seed: int
    stop: str
    epochs: int
    selected_epoch: int
    gain: float
    seconds: float
    history: dict[str, list[float | None]]
    selected: dict[str, float]
    backbone: str | None = None

    def series(self, metric: str) -> list[float]:
        return [math.nan if v is None else v for v in self.history.get(metric, [])]


def load_summary(path: Path) -> RunSummary:
    document = json.loads(path.read_text())
    if document.get("format") != SUMMARY_FORMAT:
        raise ValueError(
            f"{path}: summary format {document.get('format')!r}, expected {SUMMARY_FORMAT}"
        )
    history = document["history"]
    rows = [
        {m: (math.nan if history[m][i] is None else history[m][i]) for m in history}
        for i in range(len(history["epoch"]))
    ]
    if not rows:
        raise ValueError(f"{path}: the summary holds no evaluation")
    scored = [row for row in rows if math.isfinite(row.get(SELECTION_METRIC, math.nan))]
    selected = max(scored, key=lambda row: row[SELECTION_METRIC]) if scored else rows[-1]
    return RunSummary(
        method=document["method"],
        seed=int(document["seed"]),
        stop=document["stop"],
        epochs=int(rows[-1]["epoch"]),
        selected_epoch=int(selected["epoch"]),
        gain=last_quarter_gain(rows, SELECTION_METRIC),
        seconds=float(document.get("train_seconds", math.nan)),
        history=history,
        selected=selected,
        backbone=document.get("pretrained_sha256"),
    )


def load_regime(study: Path, regime: str) -> dict[str, list[RunSummary]]:
    """method → its summarised runs (sorted by seed), in METHODS order; ValueError when the runs
    started from different pretrained backbones (they are not one study)."""
    by_method: dict[str, list[RunSummary]] = {m: [] for m in METHODS}
    backbones: dict[str | None, str] = {}
    for path in sorted((study / regime).glob("*.json")):
        summary = load_summary(path)
        by_method.setdefault(summary.method, []).append(summary)
        backbones.setdefault(summary.backbone, path.name)
    if len(backbones) > 1:
        raise ValueError(
            f"{study / regime}: runs started from different backbones (e.g. "
            + ", ".join(backbones.values())
            + "); remove the summaries of the old one"
        )
    return {m: sorted(runs, key=lambda r: r.seed) for m, runs in by_method.items()}


def _values(runs: list[RunSummary], metric: str) -> np.ndarray:
    values = np.array([r.selected.get(metric, math.nan) for r in runs], dtype=float)
    return values[np.isfinite(values)]


def mean_std(runs: list[RunSummary], metric: str) -> str:
    values = _values(runs, metric)
    if len(values) == 0:
        return "–"
    std = values.std(ddof=1) if len(values) > 1 else math.nan
    return f"{values.mean():.4f} ± {std:.4f}" if len(values) > 1 else f"{values.mean():.4f}"


def by_seed(runs: list[RunSummary], metric: str) -> dict[int, float]:
    return {
        r.seed: r.selected[metric] for r in runs if math.isfinite(r.selected.get(metric, math.nan))
    }


def paired(by_method: dict[str, list[RunSummary]], a: str, b: str, metric: str) -> PairedDifference:
    """``metric`` of method a minus method b, paired by seed (dml_core.statistics)."""
    return paired_difference(
        by_seed(by_method.get(a, []), metric), by_seed(by_method.get(b, []), metric)
    )


def _interval(low: float, high: float) -> str:
    return "–" if math.isnan(low) else f"[{low:+.4f}, {high:+.4f}]"


def method_table(by_method: dict[str, list[RunSummary]]) -> list[str]:
    has_train = any(TRAIN_METRIC in r.selected for runs in by_method.values() for r in runs)
    columns_ = [
        (TEST_METRIC, "test R@1"),
        (TRAIN_METRIC, "train R@1"),
        (SELECTION_METRIC, "val MAP@R"),
        ("test/map@r", "test MAP@R"),
        ("train/rho@2", "train ρ@2"),
        ("train/pi_ratio", "train π_ratio"),
    ]
    if not has_train:
        columns_ = [c for c in columns_ if c[0] != TRAIN_METRIC]
    lines = [
        "| method | runs | at the cap | " + " | ".join(title for _, title in columns_) + " |",
        "|---|---|---|" + "---|" * len(columns_),
    ]
    for method, runs in by_method.items():
        if runs:
            cells = [at_the_cap(runs), *(mean_std(runs, metric) for metric, _ in columns_)]
            lines.append(f"| {method} | {len(runs)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "*At the cap*: how many runs reached the epoch cap before the rule saw a plateau, and the "
        "median of their last-quarter gains in validation MAP@R. A method whose runs were still "
        "gaining at the cap is described here as it was when it stopped, not as it would be "
        "after longer training.",
    ]
    if not has_train:
        lines += [
            "",
            "Train-split Recall@1 was not recorded by these runs (the trainer evaluates only "
            "embedding-space metrics on the train split), so fitting cannot be compared with "
            "test Recall@1 here.",
        ]
    return lines


def at_the_cap(runs: list[RunSummary]) -> str:
    """The runs stopped by the epoch cap and their median last-quarter gain, as "k (+g)"."""
    gains = [r.gain for r in runs if r.stop != "converged"]
    return f"{len(gains)} ({float(np.median(gains)):+.4f})" if gains else "0"


def _cell(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:.4f}"


def run_table(by_method: dict[str, list[RunSummary]]) -> list[str]:
    lines = [
        "| run | stop | epochs | selected epoch | last-quarter gain (val MAP@R) | val MAP@R | "
        "test R@1 | train R@1 | minutes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, runs in by_method.items():
        for r in runs:
            lines.append(
                f"| {method} seed {r.seed} | {r.stop} | {r.epochs} | {r.selected_epoch} | "
                f"{r.gain:+.4f} | {_cell(r.selected.get(SELECTION_METRIC, math.nan))} | "
                f"{_cell(r.selected.get(TEST_METRIC, math.nan))} | "
                f"{_cell(r.selected.get(TRAIN_METRIC, math.nan))} | {r.seconds / 60:.1f} |"
            )
    return lines


def claim_alike(by_method: dict[str, list[RunSummary]]) -> tuple[str, list[str]]:
    lines = [
        "| pair (a − b) | seeds | mean difference of test R@1 | 95 % CI | differs from 0 | "
        f"within ±{EQUIVALENCE_MARGIN} |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = []
    for a, b in itertools.combinations(BASE_METHODS, 2):
        d = paired(by_method, a, b, TEST_METRIC)
        result = verdict(d.low, d.high, "equivalent", EQUIVALENCE_MARGIN)
        differs = "–" if math.isnan(d.low) else ("yes" if d.low > 0 or d.high < 0 else "no")
        verdicts.append(result)
        estimate = "–" if math.isnan(d.estimate) else f"{d.estimate:+.4f}"
        lines.append(
            f"| {a} − {b} | {d.n} | {estimate} | {_interval(d.low, d.high)} | {differs} | "
            f"{result} |"
        )
    return combine_verdicts(verdicts), lines


def claim_rho(by_method: dict[str, list[RunSummary]]) -> tuple[str, list[str]]:
    lines = [
        "| pair (with ρ − without) | seeds | mean difference of test R@1 | 95 % CI | verdict | "
        "train ρ@2 difference [95 % CI] |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = []
    for treated, control in RHO_PAIRS + EXTRA_RHO_PAIRS:
        d = paired(by_method, treated, control, TEST_METRIC)
        spectrum = paired(by_method, treated, control, SPECTRUM_METRIC)
        result = verdict(d.low, d.high, "greater")
        counted = (treated, control) in RHO_PAIRS
        if counted:
            verdicts.append(result)
        estimate = "–" if math.isnan(d.estimate) else f"{d.estimate:+.4f}"
        note = "" if counted else " (not in the verdict)"
        flattening = (
            "–"
            if math.isnan(spectrum.estimate)
            else f"{spectrum.estimate:+.4f} {_interval(spectrum.low, spectrum.high)}"
        )
        lines.append(
            f"| {treated} − {control} | {d.n} | {estimate} | {_interval(d.low, d.high)} | "
            f"{result}{note} | {flattening} |"
        )
    return combine_verdicts(verdicts), lines


def correlation_groups(
    by_method: dict[str, list[RunSummary]], metric: str
) -> list[tuple[list[float], list[float]]]:
    """Per method with ≥ 2 runs: (train metric, test R@1) of each run at its selected epoch."""
    groups = []
    for runs in by_method.values():
        pairs = [
            (r.selected.get(metric, math.nan), r.selected.get(TEST_METRIC, math.nan)) for r in runs
        ]
        pairs = [(x, y) for x, y in pairs if math.isfinite(x) and math.isfinite(y)]
        if len(pairs) >= 2:
            groups.append(([x for x, _ in pairs], [y for _, y in pairs]))
    return groups


def claim_correlation(by_method: dict[str, list[RunSummary]]) -> tuple[str, list[str]]:
    lines = [
        "| train-split metric | methods | Pearson r [95 % CI] | Spearman ρ [95 % CI] | "
        "paper (CUB200) | expected sign | verdict (Spearman CI) |",
        "|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for metric in (*CORRELATED_METRICS, *CONTEXT_METRICS):
        groups = correlation_groups(by_method, metric)
        if len(groups) < 3:
            lines.append(
                f"| {metric} | {len(groups)} | – | – | "
                f"{PAPER_CUB_SPEARMAN[metric]:+.2f} | – | needs ≥ 3 methods |"
            )
            if metric in CORRELATED_METRICS:
                verdicts.append("inconclusive")
            continue
        pearson = method_mean_correlation(groups, "pearson")
        spearman = method_mean_correlation(groups, "spearman")
        direction = CORRELATED_METRICS.get(metric)
        result = verdict(spearman.low, spearman.high, direction) if direction else "context"
        if direction:
            verdicts.append(result)
        sign = {"less": "negative", "greater": "positive"}.get(direction or "", "–")
        lines.append(
            f"| {metric} | {len(groups)} | {pearson.estimate:+.2f} "
            f"[{pearson.low:+.2f}, {pearson.high:+.2f}] | {spearman.estimate:+.2f} "
            f"[{spearman.low:+.2f}, {spearman.high:+.2f}] | {PAPER_CUB_SPEARMAN[metric]:+.2f} | "
            f"{sign} | {result} |"
        )
    return combine_verdicts(verdicts), lines


def trajectory_table(by_method: dict[str, list[RunSummary]]) -> list[str]:
    runs = [r for group in by_method.values() for r in group]
    lines = [
        "| train-split metric | runs | median within-run Spearman with test R@1 | "
        "runs negative / positive |",
        "|---|---|---|---|",
    ]
    for metric in (*CORRELATED_METRICS, *CONTEXT_METRICS):
        recorded = [r for r in runs if metric in r.history and TEST_METRIC in r.history]
        summary = trajectory_correlations(
            [(r.series(metric), r.series(TEST_METRIC)) for r in recorded], "spearman"
        )
        median = "–" if math.isnan(summary.median) else f"{summary.median:+.2f}"
        lines.append(
            f"| {metric} | {len(summary.values)} | {median} | "
            f"{summary.negative} / {summary.positive} |"
        )
    return lines


PNG_OPTIONS = {"format": "png", "dpi": 72, "metadata": {"Software": None}}
"""No matplotlib version in the file: the same summaries give the same bytes."""


def curves_figure(by_method: dict[str, list[RunSummary]], regime: str) -> Figure:
    """One panel per method: each seed's validation MAP@R per evaluation, the selected epoch as a
    dot; solid lines converged by the rule, dashed ones stopped at the epoch cap."""
    methods = [m for m, runs in by_method.items() if runs]
    columns_ = 3
    rows = math.ceil(len(methods) / columns_)
    figure, axes = plt.subplots(
        rows, columns_, figsize=(11, 2.6 * rows), sharex=True, sharey=True, squeeze=False
    )
    for panel, method in itertools.zip_longest(axes.flat, methods):
        if method is None:
            panel.set_visible(False)
            continue
        for r in by_method[method]:
            epochs, values = r.series("epoch"), r.series(SELECTION_METRIC)
            style = "-" if r.stop == "converged" else "--"
            (line,) = panel.plot(epochs, values, style, linewidth=1.2, label=f"seed {r.seed}")
            panel.plot(
                [r.selected_epoch], [r.selected[SELECTION_METRIC]], "o", color=line.get_color()
            )
        panel.set_title(method, fontsize=10)
        panel.grid(alpha=0.3)
    for panel in axes[-1]:
        panel.set_xlabel("epoch")
    for panel in axes[:, 0]:
        panel.set_ylabel("val MAP@R")
    axes.flat[0].legend(fontsize=7, loc="lower right")
    figure.suptitle(
        f"Regime {regime}: validation MAP@R per evaluation (dot: selected epoch; dashed: "
        "stopped at the epoch cap)",
        fontsize=11,
    )
    figure.tight_layout()
    return figure


def kept_first_evaluation(by_method: dict[str, list[RunSummary]]) -> str:
    """A sentence naming the runs whose selected epoch is their first evaluation ("" if none):
    validation never beat its starting value before the rule stopped them."""
    names = [
        f"{r.method} seed {r.seed}"
        for runs in by_method.values()
        for r in runs
        if r.selected_epoch == r.history["epoch"][0]  # load_summary refuses empty histories
    ]
    if not names:
        return ""
    return (
        f" Selected at their first evaluation: {', '.join(names)}. Validation MAP@R never beat "
        "its first value before the rule stopped the run (see the curves below), "
        "so such a run describes its starting point more than its method."
    )


def curves_paragraph(figure_link: str | None) -> list[str]:
    if figure_link is None:
        return []
    return [f"![validation MAP@R of every run per evaluation]({figure_link})", ""]


def regime_section(
    regime: str, by_method: dict[str, list[RunSummary]], figure_link: str | None = None
) -> list[str]:
    settings = REGIMES[regime]
    finished = sum(len(runs) for runs in by_method.values())
    total = len(all_tasks(regime))
    converged = sum(r.stop == "converged" for runs in by_method.values() for r in runs)
    lines = [
        f"## Regime `{regime}`: preset `{settings.preset}`",
        "",
        f"The `{settings.preset}` preset {settings.description}; the study adds "
        f"`{' '.join(settings.flags)}` and stops a run when its validation MAP@R has set no "
        f"new best over the last quarter of its evaluations (after at least "
        f"{settings.min_epochs} epochs), at the latest at epoch {settings.epoch_cap}. Every "
        "value below is taken at the epoch of the best validation MAP@R (validation Recall@1 "
        "saturates near 0.95 on the 20 held-out classes, within its sampling error of ±0.008)."
        + (f" {settings.caveat}" if settings.caveat else ""),
        "",
        f"**{finished} of {total} runs finished** ({converged} converged by the rule, "
        f"{finished - converged} stopped at the epoch cap).",
    ]
    if finished < total:
        lines[-1] += (
            f" {total - finished} remain; continue them with "
            f"`python scripts/glyphs_study.py run --regime {regime}` (or in pieces, "
            f"`--shard i/n` for i = 1…n), then `python scripts/glyphs_study.py results`. Until "
            f"every method has its {len(SEEDS)} seeds the verdicts below are provisional: an "
            "interval over 2 or 3 seeds rests on 1 or 2 degrees of freedom, and a verdict may "
            "still change."
        )
    if finished == 0:
        return [*lines, ""]
    lines[-1] += kept_first_evaluation(by_method)
    claim1, claim1_lines = claim_alike(by_method)
    claim2, claim2_lines = claim_rho(by_method)
    claim3, claim3_lines = claim_correlation(by_method)
    return [
        *lines,
        "",
        "### Methods (mean ± std over seeds)",
        "",
        *method_table(by_method),
        "",
        "### Claims",
        "",
        f"**Claim 1: methods perform alike under the fair protocol: {claim1}.** Paired by seed, "
        f"for each pair of losses without ρ; a pair is alike when the 95 % interval of its "
        f"difference lies within ±{EQUIVALENCE_MARGIN}, different when it lies wholly outside, "
        "else inconclusive. The claim holds when every pair is alike and fails when one pair "
        "is different.",
        "",
        *claim1_lines,
        "",
        f"**Claim 2: ρ-regularization raises Recall@1 for triplet-family losses: {claim2}.** "
        "Paired by seed (same data, initialisation and batches), t interval; a pair holds when "
        "its interval lies above 0, fails when below, and is inconclusive when it contains 0. "
        "The last column checks the mechanism: ρ-regularization is meant to flatten the train "
        "spectrum, i.e. lower train ρ@2; where that interval does not lie below 0, a pair's "
        "Recall@1 verdict does not test what the regularizer does to the spectrum.",
        "",
        *claim2_lines,
        "",
        f"**Claim 3: train-split ρ@2 and π_ratio correlate with test Recall@1 across methods: "
        f"{claim3}.** Correlations of the per-method means (methods with ≥ 2 runs); 95 % "
        "percentile bootstrap over seeds resampled within each method (4,000 resamples, fixed "
        "seed). Holds when both Spearman intervals exclude 0 on the paper's side.",
        "",
        *claim3_lines,
        "",
        "Within-run trajectories (another question: does the metric move with Recall@1 while "
        "one model trains?), over each run's evaluations:",
        "",
        *trajectory_table(by_method),
        "",
        "### Every run",
        "",
        *curves_paragraph(figure_link),
        *run_table(by_method),
        "",
    ]


PREAMBLE = """# Results: the paper's claims on `glyphs`, in two regimes

Generated by `python scripts/glyphs_study.py results` from the run summaries in `docs/study/`
alone; `python scripts/glyphs_study.py run --regime REGIME [--shard i/n]` trains the missing runs
(docs/DESIGN.md §5 describes the protocol). Nine methods × five seeds per regime: margin, triplet and
contrastive with the distance-weighted miner, each also with ρ-regularization at the official
push probability 0.35 (margin also at 0.15), multi-similarity and normalised softmax.

What these numbers can say: whether a difference between two methods (paired by seed) is
distinguishable from seed noise at 95 %, and whether train-split embedding metrics rank methods
the way test Recall@1 does. What they cannot say: anything about CUB200, CARS196 or SOP (the
glyphs are procedural 64×64 characters and the network is a 0.4 M-parameter CNN); with five
seeds an interval that contains zero means "not resolved", not "no effect"; and nine method
means leave wide correlation intervals.

**An earlier study is withdrawn.** A first version of this page (27 runs: 9 methods × 3 seeds, 8
epochs from scratch) concluded that ρ-regularization lowers margin's Recall@1 and that π_ratio
correlates with Recall@1 with the opposite sign to the paper. Its data could not carry that: the best
epoch was the last in 26 of 27 runs (the models were still learning, and a ρ run lagging by one
evaluation looks like "ρ hurts"); margin's train ρ@2 barely moved with ρ (0.322 → 0.336), so the
mechanism never switched on; π_ratio fell within every run as Recall@1 rose, so across unconverged
runs it tracked training progress; runs were correlated as if independent; there were no validation
classes; and margin's β learnt at 0.5× the network's rate instead of the official 50×. This page
replaces it: runs train to convergence (or report their last-quarter gain), epochs are chosen on
validation classes, differences are paired by seed with intervals, and correlations are taken over
method means. (A first start of the fine-tune regime, 8 runs on a backbone stopped before its
plateau and selected on validation Recall@1, was discarded when the backbone was
pretrained to its plateau and the selection moved to validation MAP@R; every summary now records the
SHA-256 of the backbone it started from.)
"""

REPRODUCING = """## Reproducing the paper on CUB200-2011, CARS196 and SOP

The presets follow the paper's protocol (docs/DESIGN.md §5): ResNet50 with ImageNet weights and frozen
BatchNorm, 128-d L2-normalised embedding, Adam lr 1e-5, weight decay 4e-4, batch 112 of 56 classes ×
2 images, 150 epochs on CUB200 and CARS196, 100 on SOP; train RandomResizedCrop(224) + flip, test
Resize(256) + CenterCrop(224). ImageNet weights are read from the torch hub cache
(`$TORCH_HOME/hub/checkpoints/resnet50-0676ba61.pth`), never downloaded.

```
for seed in 0 1 2 3 4; do
  for method in margin margin-rho; do
    python -m dml_core train --preset paper-cub200-$method --data-root DATA/CUB_200_2011 \\
        --seed $seed --out runs/cub/$method-seed$seed
  done
done
python -m dml_core report runs/cub --out docs/cub200
```

Replace `cub200` by `cars196` (`DATA/cars196` with `cars_annos.mat` and `car_ims/`) or `sop`
(`DATA/Stanford_Online_Products` with `Ebay_train.txt` and `Ebay_test.txt`). Layouts: see the README.
Expected compute: the paper's runs take a few GPU-hours each (ResNet50 at batch 112: CUB has 5,864
training images, so 52 steps per epoch and about 7,800 steps in 150 epochs; SOP has 59,551, so 530
steps per epoch). `bench/gpu_bench.py` measures the images per second of a given card.

Published Recall@1 to compare with (mean ± std over 5 seeds; Roth et al. 2020):

| method | CUB200 | CARS196 | SOP |
|---|---|---|---|
| Margin (D, β = 1.2) | 63.09 ± 0.46 | 79.86 ± 0.33 | 78.43 ± 0.07 |
| Margin (D, β = 1.2) + ρ | 64.9 | 82.4 | 78.5 |
"""


def results_page(study: Path, figures_for: Path | None = None) -> str:
    """The page from the summaries alone; with ``figures_for`` (the page's folder) each regime
    with runs also gets its curves drawn beside the summaries (``<regime>-curves.png``), linked."""
    sections = [PREAMBLE]
    for regime in REGIMES:
        by_method = load_regime(study, regime)
        link = None
        if figures_for is not None and any(by_method.values()):
            path = study / f"{regime}-curves.png"
            figure = curves_figure(by_method, regime)
            atomic_write(path, lambda temporary, f=figure: f.savefig(temporary, **PNG_OPTIONS))
            plt.close(figure)
            link = Path(os.path.relpath(path, figures_for)).as_posix()
        sections.append("\n".join(regime_section(regime, by_method, link)))
    sections.append(REPRODUCING)
    return "\n".join(sections)


def results(study: Path, out: Path) -> str:
    """Write the page and its figures (``results_page``)."""
    page = results_page(study, figures_for=out.parent)
    atomic_write_bytes(out, page.encode())
    return page


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="train and summarise the missing runs of a shard")
    run_parser.add_argument("--regime", choices=sorted(REGIMES), required=True)
    run_parser.add_argument("--shard", default="1/1", help="i/n: every n-th task from the i-th")
    run_parser.add_argument("--jobs", type=int, default=1, help="runs at a time (1 thread each)")
    run_parser.add_argument("--runs", type=Path, default=RUNS, help="where run directories go")
    run_parser.add_argument("--study", type=Path, default=STUDY, help="where summaries go")
    run_parser.add_argument(
        "--trainer-flags",
        default="",
        help="extra train flags for new runs (for smoke tests; recorded in each summary)",
    )
    results_parser = commands.add_parser("results", help="write docs/RESULTS.md from summaries")
    results_parser.add_argument("--study", type=Path, default=STUDY)
    results_parser.add_argument("--out", type=Path, default=ROOT / "docs" / "RESULTS.md")
    args = parser.parse_args(argv)
    if args.command == "run":
        try:
            remaining = run(
                args.regime,
                args.shard,
                args.jobs,
                runs=args.runs,
                study=args.study,
                extra=shlex.split(args.trainer_flags),
            )
        except ValueError as error:
            parser.error(str(error))
        return 0 if remaining >= 0 else 1
    results(args.study, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
