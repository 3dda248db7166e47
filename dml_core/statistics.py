"""Statistics for a study of methods × seeds: paired differences, verdicts and correlations.

Pure numpy/scipy; it knows nothing about training.

- **Paired difference** of a treatment and a control run with the same seed (same data split,
  initialisation and batches): dᵢ = treatmentᵢ − controlᵢ over the n shared seeds, mean d̄,
  sample std s (ddof 1) and the t interval d̄ ± t_{1−α/2, n−1} · s/√n (the interval of
  ``scipy.stats.ttest_rel``).
- **Verdict** of a claim from an interval [lo, hi]: for a claim "the difference is > 0" it *holds*
  when lo > 0, *fails* when hi < 0, and is *inconclusive* when the interval contains zero (mirror
  for "< 0"). For a claim of likeness "|difference| ≤ δ" it holds when [lo, hi] ⊂ [−δ, δ], fails
  when the interval lies wholly outside [−δ, δ], and is inconclusive otherwise (an equivalence
  test in the style of Schuirmann's TOST, with the 95 % interval: conservative).
- **Correlation across method means** (as Roth et al., ICML 2020, Fig. 3 correlate per-method
  values): x̄ₘ and ȳₘ are each method's means over its seeds; Pearson r and Spearman ρ of (x̄, ȳ)
  over methods. The 95 % interval is a percentile bootstrap that resamples seeds with
  replacement *within each method* (keeping each run's x and y together), recomputes the means
  and the correlation, ``BOOTSTRAP_RESAMPLES`` times from a fixed RNG seed.
- **Trajectory correlations**: within one run, the correlation over its evaluations. They answer
  another question (does the metric move with Recall@1 while one model trains?) and are reported
  apart from the across-method correlations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 4000
BOOTSTRAP_SEED = 0
VERDICTS = ("holds", "fails", "inconclusive")
DIRECTIONS = ("greater", "less", "equivalent")


@dataclass(frozen=True)
class Interval:
    """An estimate with its two-sided confidence interval; ``n`` counts what it rests on."""

    estimate: float
    low: float
    high: float
    n: int

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class PairedDifference(Interval):
    """Mean of treatment − control over shared seeds, its t interval, the std and the seeds."""

    std: float = math.nan
    seeds: tuple[int, ...] = ()


def paired_difference(
    treatment: Mapping[int, float], control: Mapping[int, float], confidence: float = CONFIDENCE
) -> PairedDifference:
    """d̄ ± t_{(1+c)/2, n−1}·s/√n over the seeds present in both mappings (seed → value).

    Fewer than two shared seeds give a NaN interval (which no verdict can rest on).
    """
    seeds = tuple(sorted(set(treatment) & set(control)))
    differences = np.array([treatment[s] - control[s] for s in seeds], dtype=float)
    n = len(differences)
    if n == 0:
        return PairedDifference(math.nan, math.nan, math.nan, 0, math.nan, seeds)
    mean = float(differences.mean())
    if n < 2:
        return PairedDifference(mean, math.nan, math.nan, n, math.nan, seeds)
    std = float(differences.std(ddof=1))
    half_width = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return PairedDifference(mean, mean - half_width, mean + half_width, n, std, seeds)


def verdict(low: float, high: float, direction: str, margin: float | None = None) -> str:
    """ "holds", "fails" or "inconclusive" for a claim about a difference, from its interval.

    ``direction``: "greater" (claim: > 0), "less" (claim: < 0) or "equivalent" (claim:
    |difference| ≤ ``margin``). A NaN bound is inconclusive.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    if low > high:
        raise ValueError(f"an interval needs low <= high, got [{low}, {high}]")
    if math.isnan(low) or math.isnan(high):
        return "inconclusive"
    if direction == "equivalent":
        if margin is None or margin <= 0:
            raise ValueError(f"an equivalence claim needs a margin > 0, got {margin!r}")
        if -margin <= low and high <= margin:
            return "holds"
        if low > margin or high < -margin:
            return "fails"
        return "inconclusive"
    if direction == "less":
        low, high = -high, -low
    if low > 0:
        return "holds"
    if high < 0:
        return "fails"
    return "inconclusive"


def combine_verdicts(verdicts: Sequence[str]) -> str:
    """A claim made of several parts: fails if one part fails, holds if all hold, else inconclusive."""
    if not verdicts:
        return "inconclusive"
    unknown = set(verdicts) - set(VERDICTS)
    if unknown:
        raise ValueError(f"unknown verdicts {sorted(unknown)}; valid: {', '.join(VERDICTS)}")
    if "fails" in verdicts:
        return "fails"
    if all(v == "holds" for v in verdicts):
        return "holds"
    return "inconclusive"


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row of x with the same row of y (NaN where a row is constant)."""
    x = x - x.mean(axis=-1, keepdims=True)
    y = y - y.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((x * x).sum(axis=-1) * (y * y).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (x * y).sum(axis=-1) / denominator, np.nan)


def correlation(x: np.ndarray, y: np.ndarray, method: str) -> np.ndarray:
    """Row-wise Pearson ("pearson") or Spearman ("spearman": Pearson of average ranks)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if method == "spearman":
        x, y = stats.rankdata(x, axis=-1), stats.rankdata(y, axis=-1)
    elif method != "pearson":
        raise ValueError(f"method must be pearson or spearman, got {method!r}")
    return _rowwise_pearson(x, y)


def bootstrap_indices(
    sizes: Sequence[int], resamples: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Per group of ``sizes[m]`` runs, a (resamples × sizes[m]) array of indices drawn with
    replacement; groups are drawn in order (the draw order the slow reference in the tests repeats)."""
    return [rng.integers(0, size, size=(resamples, size)) for size in sizes]


def method_mean_correlation(
    groups: Sequence[tuple[Sequence[float], Sequence[float]]],
    method: str = "spearman",
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> Interval:
    """Correlation of per-method means with a within-method seed bootstrap (module docstring).

    ``groups``: per method, (x values, y values) of its runs, paired by position. ``n`` of the
    result is the number of methods. Resamples whose means are constant (NaN correlation) are
    left out of the percentiles.
    """
    if len(groups) < 3:
        raise ValueError(
            f"a correlation across methods needs at least 3 methods, got {len(groups)}"
        )
    xs = [np.asarray(x, dtype=float) for x, _ in groups]
    ys = [np.asarray(y, dtype=float) for _, y in groups]
    for x, y in zip(xs, ys, strict=True):
        if x.shape != y.shape or x.ndim != 1 or len(x) == 0:
            raise ValueError("each method needs equally many x and y values (at least one)")
    estimate = float(
        correlation(np.array([x.mean() for x in xs]), np.array([y.mean() for y in ys]), method)
    )
    rng = np.random.default_rng(seed)
    indices = bootstrap_indices([len(x) for x in xs], resamples, rng)
    mean_x = np.stack([x[i].mean(axis=1) for x, i in zip(xs, indices, strict=True)], axis=1)
    mean_y = np.stack([y[i].mean(axis=1) for y, i in zip(ys, indices, strict=True)], axis=1)
    values = correlation(mean_x, mean_y, method)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return Interval(estimate, math.nan, math.nan, len(groups))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(estimate, float(low), float(high), len(groups))


@dataclass(frozen=True)
class TrajectorySummary:
    """Within-run correlations over evaluations: one value per run with ≥ 3 evaluations."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return float(np.median(self.values)) if self.values else math.nan

    @property
    def negative(self) -> int:
        return sum(v < 0 for v in self.values)

    @property
    def positive(self) -> int:
        return sum(v > 0 for v in self.values)


def trajectory_correlations(
    runs: Sequence[tuple[Sequence[float], Sequence[float]]], method: str = "spearman"
) -> TrajectorySummary:
    """Per run, the correlation of x and y over its evaluations (runs with < 3 points or a
    constant series are skipped)."""
    values = []
    for x, y in runs:
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        if x.shape != y.shape:
            raise ValueError(f"a trajectory needs as many x as y values, got {x.shape}, {y.shape}")
        keep = np.isfinite(x) & np.isfinite(y)
        if keep.sum() < 3:
            continue
        value = float(correlation(x[keep], y[keep], method))
        if math.isfinite(value):
            values.append(value)
    return TrajectorySummary(tuple(values))
