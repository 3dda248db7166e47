"""dml_core.statistics against scipy and against slow explicit references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dml_core.statistics import (
    bootstrap_indices,
    combine_verdicts,
    method_mean_correlation,
    paired_difference,
    trajectory_correlations,
    verdict,
)


def test_paired_difference_matches_scipy_ttest_rel() -> None:
    rng = np.random.default_rng(3)
    control = rng.normal(0.5, 0.02, 7)
    treatment = control + rng.normal(0.01, 0.01, 7)
    result = paired_difference(dict(enumerate(treatment)), dict(enumerate(control)))
    reference = stats.ttest_rel(treatment, control).confidence_interval(0.95)
    assert result.n == 7
    assert result.estimate == pytest.approx(np.mean(treatment - control))
    assert result.low == pytest.approx(reference.low)
    assert result.high == pytest.approx(reference.high)
    assert result.std == pytest.approx(np.std(treatment - control, ddof=1))


def test_paired_difference_uses_t_quantile_and_pairs_by_seed() -> None:
    # Seeds 9 and 5 exist on one side only; the differences are 0.1, 0.3, 0.2 for seeds 0, 1, 2.
    treatment = {0: 0.6, 1: 0.8, 2: 0.7, 9: 0.0}
    control = {2: 0.5, 0: 0.5, 1: 0.5, 5: 1.0}
    result = paired_difference(treatment, control)
    half_width = stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)
    assert result.seeds == (0, 1, 2)
    assert result.estimate == pytest.approx(0.2)
    assert (result.low, result.high) == pytest.approx((0.2 - half_width, 0.2 + half_width))


def test_paired_difference_with_one_seed_has_no_interval() -> None:
    result = paired_difference({0: 0.7}, {0: 0.5, 1: 0.4})
    assert result.n == 1 and result.estimate == pytest.approx(0.2)
    assert math.isnan(result.low) and math.isnan(result.high)
    assert verdict(result.low, result.high, "greater") == "inconclusive"


@pytest.mark.parametrize(
    ("low", "high", "direction", "expected"),
    [
        (0.01, 0.03, "greater", "holds"),
        (-0.03, -0.01, "greater", "fails"),
        (-0.01, 0.03, "greater", "inconclusive"),
        (-0.03, -0.01, "less", "holds"),
        (0.01, 0.03, "less", "fails"),
        (-0.01, 0.01, "less", "inconclusive"),
    ],
)
def test_directional_verdicts(low: float, high: float, direction: str, expected: str) -> None:
    assert verdict(low, high, direction) == expected


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (-0.01, 0.015, "holds"),  # inside ±0.02
        (0.025, 0.05, "fails"),  # wholly beyond +0.02
        (-0.06, -0.03, "fails"),  # wholly beyond −0.02
        (0.005, 0.03, "inconclusive"),  # straddles the margin
        (-0.05, 0.05, "inconclusive"),  # too wide to tell
    ],
)
def test_equivalence_verdicts(low: float, high: float, expected: str) -> None:
    assert verdict(low, high, "equivalent", margin=0.02) == expected


def test_verdict_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="direction"):
        verdict(0.0, 1.0, "bigger")
    with pytest.raises(ValueError, match="margin"):
        verdict(0.0, 1.0, "equivalent")
    with pytest.raises(ValueError, match="low <= high"):
        verdict(1.0, 0.0, "greater")


def test_combine_verdicts() -> None:
    assert combine_verdicts(["holds", "holds"]) == "holds"
    assert combine_verdicts(["holds", "inconclusive"]) == "inconclusive"
    assert combine_verdicts(["holds", "inconclusive", "fails"]) == "fails"
    assert combine_verdicts([]) == "inconclusive"


def slow_bootstrap(groups, method, resamples, seed):
    """The within-method seed bootstrap written out loop by loop, with scipy's correlations."""
    rng = np.random.default_rng(seed)
    indices = bootstrap_indices([len(x) for x, _ in groups], resamples, rng)
    correlate = stats.pearsonr if method == "pearson" else stats.spearmanr
    values = []
    for b in range(resamples):
        means_x, means_y = [], []
        for (x, y), drawn in zip(groups, indices, strict=True):
            means_x.append(np.mean([x[i] for i in drawn[b]]))
            means_y.append(np.mean([y[i] for i in drawn[b]]))
        values.append(correlate(means_x, means_y).statistic)
    return np.percentile(values, [2.5, 97.5])


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_method_mean_correlation_matches_slow_reference(method: str) -> None:
    rng = np.random.default_rng(1)
    groups = []
    for m in range(5):
        x = m + rng.normal(0, 1.0, 3)
        groups.append((x, 0.5 * x + rng.normal(0, 1.0, 3)))
    result = method_mean_correlation(groups, method, resamples=300, seed=7)
    means_x = [np.mean(x) for x, _ in groups]
    means_y = [np.mean(y) for _, y in groups]
    correlate = stats.pearsonr if method == "pearson" else stats.spearmanr
    assert result.n == 5
    assert result.estimate == pytest.approx(correlate(means_x, means_y).statistic)
    low, high = slow_bootstrap(groups, method, 300, 7)
    assert (result.low, result.high) == pytest.approx((low, high))
    assert result.low <= result.estimate <= result.high


def test_method_mean_correlation_is_reproducible_and_seed_dependent() -> None:
    rng = np.random.default_rng(2)
    groups = [(rng.normal(size=4), rng.normal(size=4)) for _ in range(6)]
    first = method_mean_correlation(groups, "pearson", resamples=2000)
    again = method_mean_correlation(groups, "pearson", resamples=2000)
    other = method_mean_correlation(groups, "pearson", resamples=2000, seed=1)
    assert first == again
    assert (first.low, first.high) != (other.low, other.high)


def test_method_mean_correlation_interval_excludes_zero_for_a_clear_relation() -> None:
    rng = np.random.default_rng(4)
    groups = []
    for m in range(8):
        x = m + rng.normal(0, 0.1, 5)
        groups.append((x, -2.0 * x + rng.normal(0, 0.1, 5)))
    result = method_mean_correlation(groups, "spearman")
    assert result.estimate == pytest.approx(-1.0)
    assert result.high < 0
    assert verdict(result.low, result.high, "less") == "holds"


def test_method_mean_correlation_refuses_too_few_methods_and_unpaired_values() -> None:
    with pytest.raises(ValueError, match="at least 3 methods"):
        method_mean_correlation([([1.0], [1.0]), ([2.0], [2.0])])
    with pytest.raises(ValueError, match="equally many"):
        method_mean_correlation([([1.0], [1.0]), ([2.0], [2.0]), ([3.0, 4.0], [3.0])])


def test_trajectory_correlations_one_value_per_usable_run() -> None:
    runs = [
        ([1.0, 2.0, 3.0, 4.0], [0.1, 0.2, 0.3, 0.5]),  # rising together
        ([4.0, 3.0, 2.0, 1.0], [0.1, 0.2, 0.3, 0.4]),  # opposite
        ([1.0, 2.0], [0.1, 0.2]),  # too short: skipped
        ([1.0, 1.0, 1.0], [0.1, 0.2, 0.3]),  # constant: skipped
        ([1.0, math.nan, 2.0, 3.0, 5.0], [0.3, 0.2, 0.1, 0.4, 0.0]),  # NaN point dropped
    ]
    summary = trajectory_correlations(runs, "spearman")
    expected_last = stats.spearmanr([1.0, 2.0, 3.0, 5.0], [0.3, 0.1, 0.4, 0.0]).statistic
    assert summary.values == pytest.approx((1.0, -1.0, expected_last))
    assert summary.negative == 2 and summary.positive == 1
    assert summary.median == pytest.approx(expected_last)


def test_trajectory_refuses_unpaired_series() -> None:
    with pytest.raises(ValueError, match="as many x as y"):
        trajectory_correlations([([1.0, 2.0, 3.0], [1.0, 2.0])])
