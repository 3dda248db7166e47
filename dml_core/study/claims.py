"""The page's three claims of the paper, tested on a study's summaries (``dml_core.statistics``).

1. *Methods perform alike under the fair protocol*: for every pair of the ``alike`` methods, the
   paired-by-seed difference of the target metric (test Recall@1) has a 95 % t interval within
   ±margin (holds), wholly outside it (fails), else inconclusive; the claim fails if one pair does.
2. *ρ-regularization raises Recall@1*: each ρ pair's paired difference above 0 (holds), below
   (fails), else inconclusive; the train ρ@2 difference beside it checks the mechanism.
3. *Train-split metrics correlate with test Recall@1 across methods*: Pearson and Spearman over
   method means with a bootstrap over seeds; holds when every Spearman interval excludes 0 on the
   paper's side (Roth et al., ICML 2020, Fig. 3).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from dml_core.statistics import (
    PairedDifference,
    combine_verdicts,
    method_mean_correlation,
    paired_difference,
    trajectory_correlations,
    verdict,
)
from dml_core.study.spec import StudySpec
from dml_core.study.summaries import RunSummary

Runs = dict[str, list[RunSummary]]
SPECTRUM_METRIC = "train/rho@2"
"""What ρ-regularization acts on: lower is a flatter spectrum (docs/DESIGN.md §3)."""
DIRECTION = {"negative": "less", "positive": "greater"}


def by_seed(runs: list[RunSummary], metric: str) -> dict[int, float]:
    return {
        r.seed: r.selected[metric] for r in runs if math.isfinite(r.selected.get(metric, math.nan))
    }


def paired(by_method: Runs, a: str, b: str, metric: str) -> PairedDifference:
    """``metric`` of method a minus method b, paired by seed."""
    return paired_difference(
        by_seed(by_method.get(a, []), metric), by_seed(by_method.get(b, []), metric)
    )


def interval(low: float, high: float) -> str:
    return "–" if math.isnan(low) else f"[{low:+.4f}, {high:+.4f}]"


def claim_alike(spec: StudySpec, by_method: Runs) -> tuple[str, list[str]]:
    margin, target = spec.comparisons.equivalence_margin, spec.comparisons.target
    lines = [
        "| pair (a − b) | seeds | mean difference of test R@1 | 95 % CI | differs from 0 | "
        f"within ±{margin} |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = []
    for a, b in itertools.combinations(spec.comparisons.alike, 2):
        d = paired(by_method, a, b, target)
        result = verdict(d.low, d.high, "equivalent", margin)
        differs = "–" if math.isnan(d.low) else ("yes" if d.low > 0 or d.high < 0 else "no")
        verdicts.append(result)
        estimate = "–" if math.isnan(d.estimate) else f"{d.estimate:+.4f}"
        lines.append(
            f"| {a} − {b} | {d.n} | {estimate} | {interval(d.low, d.high)} | {differs} | {result} |"
        )
    return combine_verdicts(verdicts), lines


def claim_rho(spec: StudySpec, by_method: Runs) -> tuple[str, list[str]]:
    target = spec.comparisons.target
    lines = [
        "| pair (with ρ − without) | seeds | mean difference of test R@1 | 95 % CI | verdict | "
        "train ρ@2 difference [95 % CI] |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = []
    for treated, control in spec.comparisons.rho_pairs + spec.comparisons.extra_rho_pairs:
        d = paired(by_method, treated, control, target)
        spectrum = paired(by_method, treated, control, SPECTRUM_METRIC)
        result = verdict(d.low, d.high, "greater")
        counted = (treated, control) in spec.comparisons.rho_pairs
        if counted:
            verdicts.append(result)
        estimate = "–" if math.isnan(d.estimate) else f"{d.estimate:+.4f}"
        note = "" if counted else " (not in the verdict)"
        flattening = (
            "–"
            if math.isnan(spectrum.estimate)
            else f"{spectrum.estimate:+.4f} {interval(spectrum.low, spectrum.high)}"
        )
        lines.append(
            f"| {treated} − {control} | {d.n} | {estimate} | {interval(d.low, d.high)} | "
            f"{result}{note} | {flattening} |"
        )
    return combine_verdicts(verdicts), lines


def correlation_groups(
    by_method: Runs, metric: str, target: str
) -> list[tuple[list[float], list[float]]]:
    """Per method with ≥ 2 runs: (train metric, target) of each run at its selected epoch."""
    groups = []
    for runs in by_method.values():
        pairs = [(r.selected.get(metric, math.nan), r.selected.get(target, math.nan)) for r in runs]
        pairs = [(x, y) for x, y in pairs if math.isfinite(x) and math.isfinite(y)]
        if len(pairs) >= 2:
            groups.append(([x for x, _ in pairs], [y for _, y in pairs]))
    return groups


def _paper(spec: StudySpec, metric: str) -> str:
    value = spec.comparisons.paper_correlations.get(metric)
    return "–" if value is None else f"{value:+.2f}"


def claim_correlation(spec: StudySpec, by_method: Runs) -> tuple[str, list[str]]:
    comparisons = spec.comparisons
    lines = [
        "| train-split metric | methods | Pearson r [95 % CI] | Spearman ρ [95 % CI] | "
        "paper (CUB200) | expected sign | verdict (Spearman CI) |",
        "|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for metric in (*comparisons.correlations, *comparisons.context_metrics):
        groups = correlation_groups(by_method, metric, comparisons.target)
        if len(groups) < 3:
            lines.append(
                f"| {metric} | {len(groups)} | – | – | {_paper(spec, metric)} | – | "
                "needs ≥ 3 methods |"
            )
            if metric in comparisons.correlations:
                verdicts.append("inconclusive")
            continue
        pearson = method_mean_correlation(groups, "pearson")
        spearman = method_mean_correlation(groups, "spearman")
        sign = comparisons.correlations.get(metric)
        result = verdict(spearman.low, spearman.high, DIRECTION[sign]) if sign else "context"
        if sign:
            verdicts.append(result)
        lines.append(
            f"| {metric} | {len(groups)} | {pearson.estimate:+.2f} "
            f"[{pearson.low:+.2f}, {pearson.high:+.2f}] | {spearman.estimate:+.2f} "
            f"[{spearman.low:+.2f}, {spearman.high:+.2f}] | {_paper(spec, metric)} | "
            f"{sign or '–'} | {result} |"
        )
    return combine_verdicts(verdicts), lines


def trajectory_table(spec: StudySpec, by_method: Runs) -> list[str]:
    runs = [r for group in by_method.values() for r in group]
    target = spec.comparisons.target
    lines = [
        "| train-split metric | runs | median within-run Spearman with test R@1 | "
        "runs negative / positive |",
        "|---|---|---|---|",
    ]
    for metric in (*spec.comparisons.correlations, *spec.comparisons.context_metrics):
        recorded = [r for r in runs if metric in r.history and target in r.history]
        summary = trajectory_correlations(
            [(r.series(metric), r.series(target)) for r in recorded], "spearman"
        )
        median = "–" if math.isnan(summary.median) else f"{summary.median:+.2f}"
        lines.append(
            f"| {metric} | {len(summary.values)} | {median} | "
            f"{summary.negative} / {summary.positive} |"
        )
    return lines


def values_of(runs: list[RunSummary], metric: str) -> np.ndarray:
    values = np.array([r.selected.get(metric, math.nan) for r in runs], dtype=float)
    return values[np.isfinite(values)]
