"""Explain generalization: does a train-only property of the embedding predict test Recall@1?

The paper's claim (Roth et al., ICML 2020, Fig. 3 on CUB200: Spearman of train ρ −0.80, π_ratio
+0.79, π_intra +0.25, π_inter −0.16 with test Recall@1 over methods) made a check that runs on a
study's summaries or on any folder of runs. Every run counts at its selected epoch (the study's
selection metric, or for a folder the run's own ``best_metric`` on validation classes, else its
last epoch: ``dml_core.report.protocol_values``' fair row). For one train-only metric x and the
target y:

- **over method means**: Pearson and Spearman of (x̄ₘ, ȳₘ), 95 % percentile intervals from a
  bootstrap that resamples seeds jointly across methods
  (``dml_core.statistics.joint_bootstrap_correlation``), and a permutation p-value over methods;
- **over runs**: the same correlations over every run, with the same joint seed bootstrap (a
  drawn seed brings all runs of that seed);
- **leave one method out**: the held-out method is ranked among all methods by x alone, with the
  sign fitted on the others (Spearman of their means); a hit when that rank equals its rank by ȳ
  (1 = highest), a near hit when within one place. Chance: 1/M exact, (3M − 2)/M² within one.

Pure: numpy/scipy through ``dml_core.statistics``; nothing here trains or draws.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dml_core.report import _varying_fields, find_runs, group_name, load_run, protocol_values
from dml_core.statistics import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    CONFIDENCE,
    Interval,
    PermutationTest,
    bootstrap_indices,
    correlation,
    joint_bootstrap_correlation,
    percentile_interval,
    permutation_correlation_test,
    seed_strata,
)

TARGET = "test/recall@1"
GAP = "gap/recall@1"
"""Derived: train Recall@1 − test Recall@1 (it contains the target, so a negative correlation with
it is partly built in)."""
PAPER_CUB200 = {
    "train/rho@2": -0.80,
    "train/pi_ratio": 0.79,
    "train/pi_intra": 0.25,
    "train/pi_inter": -0.16,
}
"""Roth et al. 2020, Fig. 3 (CUB200): Spearman of each train-split metric with test Recall@1."""
LABELS = {
    "train/rho@2": "train ρ@2",
    "train/pi_ratio": "train π_ratio",
    "train/pi_intra": "train π_intra",
    "train/pi_inter": "train π_inter",
    "train/recall@1": "train Recall@1",
    GAP: "train − test Recall@1 gap",
    "test/recall@1": "test Recall@1",
}


def label(metric: str) -> str:
    return LABELS.get(metric, metric)


@dataclass(frozen=True)
class Point:
    """One run at its selected epoch: its method (config minus seed), seed and metric values."""

    method: str
    seed: int
    values: Mapping[str, float]
    epoch: int | None = None
    run_dir: Path | None = None


def _finite(values: Mapping[str, object]) -> dict[str, float]:
    kept = {}
    for key, value in values.items():
        if isinstance(value, (int, float)) and math.isfinite(value) and key != "epoch":
            kept[key] = float(value)
    if "train/recall@1" in kept and TARGET in kept:
        kept[GAP] = kept["train/recall@1"] - kept[TARGET]
    return kept


def points_from_summaries(by_method: Mapping[str, Sequence]) -> list[Point]:
    """Points of a study (``dml_core.study.load_runs``: method → RunSummary list)."""
    return [
        Point(r.method, r.seed, _finite(r.selected), r.selected_epoch, r.run_dir)
        for runs in by_method.values()
        for r in runs
    ]


def points_from_folder(folder: str | Path) -> list[Point]:
    """Points of every run directory at or one level below ``folder``, grouped into methods as
    ``python -m dml_core report`` groups them (config fields that vary, seed excluded)."""
    runs = [load_run(path) for path in find_runs([folder])]
    varying = _varying_fields(runs)
    points = []
    for run in runs:
        if not run.history:
            continue
        metrics = sorted({key for row in run.history for key in row})  # "epoch" included
        fair = protocol_values(run, metrics)["fair"]
        epoch = int(fair["epoch"]) if math.isfinite(fair.get("epoch", math.nan)) else None
        name = group_name(run.config, varying)
        points.append(Point(name, int(run.config["seed"]), _finite(fair), epoch, run.path))
    return points


def candidate_metrics(points: Sequence[Point], target: str = TARGET) -> list[str]:
    """Train-only metrics recorded (finite) by runs of at least 3 methods: the paper's four
    first, then the gap, then the rest alphabetically."""
    methods: dict[str, set[str]] = {}
    for p in points:
        if target in p.values:
            for key in p.values:
                if key.startswith("train/") or key == GAP:
                    methods.setdefault(key, set()).add(p.method)
    recorded = {key for key, names in methods.items() if len(names) >= 3}
    order = [*PAPER_CUB200, GAP]
    return [m for m in order if m in recorded] + sorted(recorded - set(order))


def paired_values(
    points: Sequence[Point], metric: str, target: str = TARGET
) -> dict[str, dict[int, tuple[float, float]]]:
    """method → seed → (metric, target), runs that recorded both (methods in first-seen order)."""
    runs: dict[str, dict[int, tuple[float, float]]] = {}
    for p in points:
        if metric in p.values and target in p.values:
            runs.setdefault(p.method, {})[p.seed] = (p.values[metric], p.values[target])
    return runs


def run_level_correlation(
    runs: Mapping[str, Mapping[int, tuple[float, float]]],
    method: str = "spearman",
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> Interval:
    """Correlation over every run, with the joint seed bootstrap: each stratum of seeds
    (``seed_strata``) is resampled to its size, a drawn seed bringing all runs of that seed."""
    strata = seed_strata(runs)
    x = np.array([v[0] for s in strata for by in runs.values() for k, v in by.items() if k in s])
    y = np.array([v[1] for s in strata for by in runs.values() for k, v in by.items() if k in s])
    n = len(x)
    if n < 3:
        raise ValueError(f"a correlation over runs needs at least 3 runs, got {n}")
    estimate = float(correlation(x, y, method))
    draws = bootstrap_indices([len(s) for s in strata], resamples, np.random.default_rng(seed))
    columns_x, columns_y = [], []
    for stratum, drawn in zip(strata, draws, strict=True):
        owners = [by for by in runs.values() if stratum[0] in by]
        table = np.array([[by[s] for by in owners] for s in stratum])  # seeds × methods × 2
        picked = table[drawn]  # resamples × seeds × methods × 2
        columns_x.append(picked[..., 0].reshape(resamples, -1))
        columns_y.append(picked[..., 1].reshape(resamples, -1))
    values = correlation(np.hstack(columns_x), np.hstack(columns_y), method)
    return percentile_interval(estimate, values, n, confidence)


@dataclass(frozen=True)
class HeldOut:
    """One method left out: the sign fitted on the others, its rank by x and by the target."""

    method: str
    sign: int
    predicted: int
    actual: int


@dataclass(frozen=True)
class LeaveOneOut:
    rows: tuple[HeldOut, ...]

    @property
    def exact(self) -> int:
        return sum(r.sign != 0 and r.predicted == r.actual for r in self.rows)

    @property
    def within_one(self) -> int:
        return sum(r.sign != 0 and abs(r.predicted - r.actual) <= 1 for r in self.rows)

    @property
    def chance_exact(self) -> float:
        """Expected exact hits of a random ranking: M methods × 1/M."""
        return 1.0 if self.rows else math.nan

    @property
    def chance_within_one(self) -> float:
        m = len(self.rows)
        return (3 * m - 2) / m if m else math.nan


def leave_one_method_out(means: Mapping[str, tuple[float, float]]) -> LeaveOneOut:
    """``means``: method → (x̄, ȳ). Needs ≥ 3 methods (a sign from ≥ 2 others); a held-out
    method whose others give a Spearman of 0 or NaN has sign 0 and counts as a miss."""
    if len(means) < 3:
        raise ValueError(f"leave-one-method-out needs at least 3 methods, got {len(means)}")
    rows = []
    for held, (x_h, y_h) in means.items():
        others = [v for m, v in means.items() if m != held]
        rho = float(
            correlation(
                np.array([v[0] for v in others]), np.array([v[1] for v in others]), "spearman"
            )
        )
        sign = 0 if not math.isfinite(rho) or rho == 0 else int(math.copysign(1, rho))
        predicted = 1 + sum(sign * x > sign * x_h for x, _ in others)
        actual = 1 + sum(y > y_h for _, y in others)
        rows.append(HeldOut(held, sign, predicted, actual))
    return LeaveOneOut(tuple(rows))


@dataclass(frozen=True)
class Explanation:
    metric: str
    target: str
    means: dict[str, tuple[float, float]]
    seeds: dict[str, int]
    pearson: Interval
    spearman: Interval
    permutation: PermutationTest
    runs_pearson: Interval
    runs_spearman: Interval
    leave_one_out: LeaveOneOut
    paper: float | None
    points: dict[str, dict[int, tuple[float, float]]] = field(repr=False, default_factory=dict)


def explain(
    points: Sequence[Point],
    metric: str,
    target: str = TARGET,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Explanation:
    """The module's analyses of ``metric`` against ``target``; ValueError below 3 methods."""
    runs = paired_values(points, metric, target)
    if len(runs) < 3:
        raise ValueError(
            f"{label(metric)} and {label(target)} are recorded together by {len(runs)} "
            "method(s); explaining needs at least 3"
        )
    means = {m: tuple(np.mean(list(by.values()), axis=0).tolist()) for m, by in runs.items()}
    options = {"resamples": resamples, "seed": seed}
    return Explanation(
        metric=metric,
        target=target,
        means=means,
        seeds={m: len(by) for m, by in runs.items()},
        pearson=joint_bootstrap_correlation(runs, "pearson", **options),
        spearman=joint_bootstrap_correlation(runs, "spearman", **options),
        permutation=permutation_correlation_test(
            [v[0] for v in means.values()], [v[1] for v in means.values()], "spearman", seed=seed
        ),
        runs_pearson=run_level_correlation(runs, "pearson", **options),
        runs_spearman=run_level_correlation(runs, "spearman", **options),
        leave_one_out=leave_one_method_out(means),
        paper=PAPER_CUB200.get(metric) if target == TARGET else None,
        points=runs,
    )


def _seeds_text(seeds: Mapping[str, int]) -> str:
    counts = sorted(set(seeds.values()))
    return f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"


def _interval_text(i: Interval) -> str:
    return f"{i.estimate:+.2f} [{i.low:+.2f}, {i.high:+.2f}]"


def sentences(e: Explanation) -> list[str]:
    """What the intervals allow one to conclude, in words, and nothing more."""
    x, y, m = label(e.metric), label(e.target), len(e.means)
    size = f"{m} methods × {_seeds_text(e.seeds)} seeds"
    s = e.spearman
    if not math.isfinite(s.low):
        lines = [f"Across methods the bootstrap gave no interval ({size}): nothing is resolved."]
    elif s.low > 0 or s.high < 0:
        higher = "higher" if s.low > 0 else "lower"
        lines = [
            f"Across {size}, methods with {higher} {x} had higher {y}: Spearman "
            f"{_interval_text(s)} excludes 0 (95 %, seeds resampled jointly). This ranks "
            f"these methods on this data; it does not say that changing {x} changes {y}."
        ]
    else:
        lines = [
            f"Across methods the Spearman interval {_interval_text(s)} contains 0: the "
            f"direction of the relation between {x} and {y} is not resolved with {size} "
            "(which is not evidence that there is none)."
        ]
    if e.paper is not None and math.isfinite(s.low):
        inside = s.low <= e.paper <= s.high
        lines.append(
            f"The paper's CUB200 value {e.paper:+.2f} lies "
            + (
                "inside the interval: these runs are consistent with it (and with every other "
                "value in the interval)."
                if inside
                else "outside the interval: these runs do not reproduce it (on another dataset "
                "and network)."
            )
        )
    p = e.permutation
    lines.append(
        f"Permuting {y} across the {m} methods, a Spearman at least as far from 0 came up with "
        f"p = {p.p_value:.3g}; the test counts methods as independent, which ρ-variants of one "
        "loss are not, so it overstates the evidence."
    )
    r = e.runs_spearman
    resolved = r.low > 0 or r.high < 0
    lines.append(
        f"Over the {r.n} runs, Spearman {_interval_text(r)} "
        + ("excludes 0." if resolved else "contains 0: not resolved over runs either.")
        if math.isfinite(r.low)
        else f"Over the {r.n} runs the bootstrap gave no interval."
    )
    loo = e.leave_one_out
    lines.append(
        f"Held out one at a time and ranked by {x} alone (direction fitted on the others), "
        f"{loo.exact} of {m} methods landed at their {y} rank and {loo.within_one} within one "
        f"place; a random ranking expects {loo.chance_exact:.1f} and {loo.chance_within_one:.1f}."
    )
    if e.metric == GAP:
        lines.append(f"The gap contains {y} itself, so part of a negative correlation is built in.")
    return lines
