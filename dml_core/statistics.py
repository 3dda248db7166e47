"""Statistics for a study of methods × seeds: paired differences, verdicts and correlations.

Pure numpy/scipy; it knows nothing about training.

- **Paired difference** of treatment and control runs with the same seed (same split,
  initialisation and batches): dᵢ = treatmentᵢ − controlᵢ over the n shared seeds, mean d̄, std
  s (ddof 1), t interval d̄ ± t_{1−α/2, n−1}·s/√n (that of ``scipy.stats.ttest_rel``); its
  p-value (:func:`paired_p_value`), Holm's correction over a family (:func:`holm_adjust`) and
  the smallest effect it could detect (:func:`minimum_detectable_effect`).
- **Verdict** from an interval [lo, hi]: a claim "> 0" *holds* when lo > 0, *fails* when hi < 0,
  else is *inconclusive* (mirror for "< 0"). A claim of likeness "|difference| ≤ δ" holds when
  [lo, hi] ⊂ [−δ, δ], fails when the interval lies wholly outside, else is inconclusive
  (Schuirmann's TOST with the 95 % interval: conservative).
- **Correlation across method means** (as Roth et al., ICML 2020, Fig. 3): Pearson r and
  Spearman ρ of the per-method means (x̄ₘ, ȳₘ), with a percentile bootstrap over seeds,
  ``BOOTSTRAP_RESAMPLES`` times from a fixed RNG seed: within each method
  (:func:`method_mean_correlation`) or jointly across methods
  (:func:`joint_bootstrap_correlation`), and a permutation test over methods
  (:func:`permutation_correlation_test`).
- **Trajectory correlations**: within one run, the correlation over its evaluations (does the
  metric move with Recall@1 while one model trains?), reported apart.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.optimize import brentq

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
        return "fails" if low > margin or high < -margin else "inconclusive"
    if direction == "less":
        low, high = -high, -low
    return "holds" if low > 0 else "fails" if high < 0 else "inconclusive"


def combine_verdicts(verdicts: Sequence[str]) -> str:
    """A claim made of several parts: fails if one part fails, holds if all hold, else inconclusive."""
    if not verdicts:
        return "inconclusive"
    unknown = set(verdicts) - set(VERDICTS)
    if unknown:
        raise ValueError(f"unknown verdicts {sorted(unknown)}; valid: {', '.join(VERDICTS)}")
    if "fails" in verdicts:
        return "fails"
    return "holds" if all(v == "holds" for v in verdicts) else "inconclusive"


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
    return percentile_interval(estimate, values, len(groups), confidence)


def percentile_interval(estimate: float, values: np.ndarray, n: int, confidence: float):
    """The bootstrap's percentile interval over its finite values (NaN when there are none)."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return Interval(estimate, math.nan, math.nan, n)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(estimate, float(low), float(high), n)


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


def seed_strata(runs: Mapping[str, Mapping[int, object]]) -> list[tuple[int, ...]]:
    """Seeds grouped by the set of methods that ran them, ordered by their smallest seed: 5
    seeds everywhere and 3 more for some methods give ``[(0, …, 4), (5, 6, 7)]``."""
    owners: dict[int, frozenset[str]] = {}
    for method, by_seed in runs.items():
        for seed in by_seed:
            owners[seed] = owners.get(seed, frozenset()) | {method}
    strata: dict[frozenset[str], list[int]] = {}
    for seed in sorted(owners):
        strata.setdefault(owners[seed], []).append(seed)
    return sorted((tuple(seeds) for seeds in strata.values()), key=lambda seeds: seeds[0])


def joint_bootstrap_correlation(
    runs: Mapping[str, Mapping[int, tuple[float, float]]],
    method: str = "spearman",
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> Interval:
    """Correlation of per-method means (x̄ₘ, ȳₘ) with a bootstrap that resamples **seeds jointly**.

    ``runs``: method → seed → (x, y). Runs of one seed share its split, initialisation and
    batches, so their errors are correlated; one draw of seeds is applied to every method
    (Efron & Tibshirani 1993, ch. 6: resample the independent units and keep together what
    hangs on one), unlike :func:`method_mean_correlation`, which breaks that link.

    Unequal seed sets: seeds are split into strata by the methods that ran them
    (:func:`seed_strata`: 0–4 run by all, 5–7 by those given 8 seeds); each stratum is resampled
    with replacement to its size, jointly across the methods that have it, so every method keeps
    its number of runs. Percentile interval; resamples with constant means (NaN) are dropped.
    """
    names = [m for m in runs if runs[m]]
    if len(names) < 3:
        raise ValueError(f"a correlation across methods needs at least 3 methods, got {len(names)}")
    xy = {m: {s: np.asarray(v, dtype=float) for s, v in runs[m].items()} for m in names}
    means = np.array([np.mean(list(xy[m].values()), axis=0) for m in names])
    estimate = float(correlation(means[:, 0], means[:, 1], method))
    strata = seed_strata(runs)
    draws = bootstrap_indices([len(s) for s in strata], resamples, np.random.default_rng(seed))
    sums = np.zeros((2, resamples, len(names)))
    for stratum, drawn in zip(strata, draws, strict=True):
        for j, m in enumerate(names):
            if stratum[0] in xy[m]:
                sums[:, :, j] += np.array([xy[m][s] for s in stratum]).T[:, drawn].sum(axis=2)
    counts = np.array([len(xy[m]) for m in names])
    values = correlation(sums[0] / counts, sums[1] / counts, method)
    return percentile_interval(estimate, values, len(names), confidence)


@dataclass(frozen=True)
class PermutationTest:
    """Observed statistic, its p-value, how many orderings it counted, and whether all."""

    estimate: float
    p_value: float
    permutations: int
    exact: bool


EXACT_PERMUTATIONS = 40320  # 8!: up to 8 methods, every ordering is enumerated


def permutation_correlation_test(
    x: Sequence[float],
    y: Sequence[float],
    method: str = "spearman",
    *,
    alternative: str = "two-sided",
    permutations: int = 9999,
    seed: int = BOOTSTRAP_SEED,
) -> PermutationTest:
    """p-value of the correlation of method means x and y under "no relation": y (test
    Recall@1 means) permuted across methods.

    p = #{orderings at least as extreme} / n! when all n! are enumerated (n ≤ 8, identity
    included), else (1 + #{B random ones at least as extreme}) / (1 + B) (Phipson & Smyth 2010).
    "Extreme": |r*| ≥ |r| (two-sided), r* ≥ r ("greater") or r* ≤ r ("less"), ± 1e-12.

    It treats methods as exchangeable, independent units. They are not: of 9 method means, 4 are
    ρ-variants of 3 losses, sharing loss, miner and seeds with their base, so they sit near it
    in both x and y and one family counts as 2–3 agreeing points. The p-value is optimistic (the
    data hold closer to 5 independent loss families than 9 points): an upper bound on evidence.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 3:
        raise ValueError("a permutation test needs equally many x and y values (at least 3)")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be two-sided, greater or less, got {alternative!r}")
    observed = float(correlation(x, y, method))
    n, rng = len(x), np.random.default_rng(seed)
    exact = math.factorial(n) <= EXACT_PERMUTATIONS
    orders = np.array(
        list(itertools.permutations(range(n)))
        if exact
        else [rng.permutation(n) for _ in range(permutations)]
    )
    values = correlation(np.broadcast_to(x, orders.shape), y[orders], method)
    if alternative == "two-sided":
        values, observed_ = np.abs(values), abs(observed)
    else:
        values, observed_ = (values, observed) if alternative == "greater" else (-values, -observed)
    count = int(np.count_nonzero(values >= observed_ - 1e-12))
    p_value = count / len(orders) if exact else (1 + count) / (1 + len(orders))
    return PermutationTest(observed, p_value, len(orders), exact)


def paired_p_value(d: PairedDifference, direction: str, margin: float | None = None) -> float:
    """p-value of a paired claim from t = d̄/(s/√n) with n − 1 degrees of freedom (NaN below 2).

    "greater": H₀ μ ≤ 0, p = P(T ≥ t); "less": mirror; "two-sided": p = 2·P(T ≥ |t|) (as
    ``scipy.stats.ttest_rel``); "equivalent": Schuirmann's TOST, p = max of the one-sided
    p-values of μ ≤ −margin and μ ≥ +margin.
    """
    if direction not in (*DIRECTIONS, "two-sided"):
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)} or two-sided")
    if direction == "equivalent" and (margin is None or margin <= 0):
        raise ValueError(f"an equivalence claim needs a margin > 0, got {margin!r}")
    if d.n < 2 or not math.isfinite(d.std) or d.std == 0:
        return math.nan
    scale, t, df = d.std / math.sqrt(d.n), stats.t, d.n - 1
    if direction == "equivalent":  # H₀: μ ≤ −margin or μ ≥ +margin
        above_low = t.sf((d.estimate + margin) / scale, df)
        return float(max(above_low, t.cdf((d.estimate - margin) / scale, df)))
    statistic = d.estimate / scale
    if direction == "two-sided":
        return float(2 * t.sf(abs(statistic), df))
    return float(t.sf(statistic, df) if direction == "greater" else t.cdf(statistic, df))


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979, Scand. J. Statist. 6:65–70), in input order.

    Sort p ascending: p̃₍ᵢ₎ = max_{j ≤ i} min(1, (m − j + 1)·p₍ⱼ₎). Rejecting where p̃ ≤ α
    keeps the family-wise error rate ≤ α under any dependence. It adjusts p-values, not interval
    levels (Holm has no matching simultaneous intervals). NaN p-values stay NaN, outside m.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted, finite = np.full(p.shape, math.nan), np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m, running = len(order), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def minimum_detectable_effect(
    std: float, n: int, *, power: float = 0.8, alpha: float = 1 - CONFIDENCE
) -> float:
    """The smallest true mean paired difference δ a two-sided paired t-test at level α detects
    with probability ``power``, given the differences' std s and n seeds.

    With t_c = t_{1−α/2, n−1} and T' ~ noncentral t(n − 1, λ = δ√n/s), power(δ) = P(T' > t_c)
    + P(T' < −t_c) (Cohen 1988, *Statistical Power Analysis*, ch. 2); δ solves power(δ) =
    ``power`` (Brent), near (t_{1−α/2, n−1} + t_{power, n−1})·s/√n. NaN below 2 seeds.
    """
    if n < 2 or not math.isfinite(std) or std == 0:
        return math.nan if n < 2 or not math.isfinite(std) else 0.0
    df, critical = n - 1, stats.t.ppf(1 - alpha / 2, n - 1)

    def shortfall(effect: float) -> float:
        shift = effect * math.sqrt(n) / std
        return (
            float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift)) - power
        )

    upper = std
    while shortfall(upper) < 0:
        upper *= 2
    if math.isnan(shortfall(upper)):  # scipy's noncentral t gives NaN at 1 degree of freedom
        return float((critical + stats.t.ppf(power, df)) * std / math.sqrt(n))
    return float(brentq(shortfall, 0.0, upper, xtol=1e-12 * std))
