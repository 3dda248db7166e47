"""dml_core.statistics against scipy and against slow explicit references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from dml_core.statistics import (
    bootstrap_indices,
    combine_verdicts,
    holm_adjust,
    joint_bootstrap_correlation,
    method_mean_correlation,
    minimum_detectable_effect,
    paired_difference,
    paired_p_value,
    permutation_correlation_test,
    seed_strata,
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


def study_runs(rng, methods: int, seeds_of, seed_effect: float = 0.0, slope: float = 0.5):
    """method → seed → (x, y): method m's level m, a shared per-seed offset, and run noise."""
    offsets = rng.normal(0, seed_effect, 16)
    runs = {}
    for m in range(methods):
        runs[f"m{m}"] = {}
        for s in seeds_of(m):
            x = m + offsets[s] + rng.normal(0, 1.0)
            runs[f"m{m}"][s] = (x, slope * x + offsets[s] + rng.normal(0, 1.0))
    return runs


def slow_joint_bootstrap(runs, method, resamples, seed):
    """The joint seed bootstrap written out loop by loop: strata of seeds by the methods that ran
    them, drawn in order of their smallest seed, one draw per stratum shared by its methods."""
    owners = {}
    for name, by_seed in runs.items():
        for s in by_seed:
            owners.setdefault(s, set()).add(name)
    strata = {}
    for s in sorted(owners):
        strata.setdefault(frozenset(owners[s]), []).append(s)
    strata = sorted(strata.values(), key=lambda seeds: seeds[0])
    indices = bootstrap_indices(
        [len(seeds) for seeds in strata], resamples, np.random.default_rng(seed)
    )
    correlate = stats.pearsonr if method == "pearson" else stats.spearmanr
    values = []
    for b in range(resamples):
        means_x, means_y = [], []
        for by_seed in runs.values():
            drawn = [
                seeds[i]
                for seeds, draw in zip(strata, indices, strict=True)
                for i in draw[b]
                if seeds[0] in by_seed
            ]
            means_x.append(np.mean([by_seed[s][0] for s in drawn]))
            means_y.append(np.mean([by_seed[s][1] for s in drawn]))
        values.append(correlate(means_x, means_y).statistic)
    return np.percentile(values, [2.5, 97.5])


def test_seed_strata_split_shared_and_extra_seeds() -> None:
    runs = {
        "a": dict.fromkeys(range(8)),
        "b": dict.fromkeys(range(5)),
        "c": dict.fromkeys(range(8)),
    }
    runs["d"] = dict.fromkeys([0, 1, 2, 3, 4, 9])
    assert seed_strata(runs) == [(0, 1, 2, 3, 4), (5, 6, 7), (9,)]


@pytest.mark.parametrize("method", ["pearson", "spearman"])
@pytest.mark.parametrize("eight", [(), (0, 2, 5)])
def test_joint_bootstrap_matches_slow_reference(method: str, eight: tuple[int, ...]) -> None:
    """Every method on seeds 0–4, and methods in ``eight`` on 3 seeds more."""
    rng = np.random.default_rng(5)
    runs = study_runs(rng, 7, lambda m: range(8 if m in eight else 5), seed_effect=0.5)
    result = joint_bootstrap_correlation(runs, method, resamples=300, seed=3)
    correlate = stats.pearsonr if method == "pearson" else stats.spearmanr
    means = [np.mean(list(by_seed.values()), axis=0) for by_seed in runs.values()]
    assert result.n == 7
    assert result.estimate == pytest.approx(correlate(*np.array(means).T).statistic)
    assert (result.low, result.high) == pytest.approx(
        tuple(slow_joint_bootstrap(runs, method, 300, 3))
    )


def test_joint_bootstrap_keeps_a_shared_seed_effect_out_of_the_interval() -> None:
    """A large per-seed offset common to every method moves all method means together, which
    leaves their correlation unchanged: the joint bootstrap sees that, the per-method one does not
    (it mixes different seeds' offsets into different methods) and gives a wider interval."""
    rng = np.random.default_rng(6)
    offsets = rng.normal(0, 3.0, 5)  # per seed, shared by every method, 3 × the methods' spacing
    runs = {}
    for m in range(6):
        x = {s: m + offsets[s] + rng.normal(0, 0.05) for s in range(5)}
        runs[m] = {s: (x[s], x[s] + offsets[s] + rng.normal(0, 0.05)) for s in range(5)}
    joint = joint_bootstrap_correlation(runs, "pearson")
    groups = [([v[0] for v in r.values()], [v[1] for v in r.values()]) for r in runs.values()]
    separate = method_mean_correlation(groups, "pearson")
    assert joint.high - joint.low < 0.1 * (separate.high - separate.low)
    assert joint.low > 0.99


def test_joint_bootstrap_refuses_too_few_methods() -> None:
    with pytest.raises(ValueError, match="at least 3 methods"):
        joint_bootstrap_correlation({"a": {0: (1.0, 1.0)}, "b": {0: (2.0, 1.0)}, "c": {}})


def slow_permutation_p(x, y, method, alternative):
    """Every ordering of y, scipy's correlation for each."""
    correlate = stats.pearsonr if method == "pearson" else stats.spearmanr
    observed = correlate(x, y).statistic
    hits = total = 0
    for order in itertools.permutations(range(len(y))):
        value = correlate(x, [y[i] for i in order]).statistic
        total += 1
        if alternative == "two-sided":
            hits += abs(value) >= abs(observed) - 1e-12
        elif alternative == "greater":
            hits += value >= observed - 1e-12
        else:
            hits += value <= observed + 1e-12
    return hits / total


@pytest.mark.parametrize("method", ["pearson", "spearman"])
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_permutation_test_enumerates_every_ordering(method: str, alternative: str) -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(size=6)
    y = 0.6 * x + rng.normal(0, 0.5, 6)
    result = permutation_correlation_test(x, y, method, alternative=alternative)
    assert result.exact and result.permutations == 720
    assert result.p_value == pytest.approx(slow_permutation_p(x, y, method, alternative))


def test_permutation_test_agrees_with_scipy_permutation_test() -> None:
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=7), rng.normal(size=7)
    ours = permutation_correlation_test(x, y, "pearson", alternative="greater")
    theirs = stats.permutation_test(
        (y,), lambda b: stats.pearsonr(x, b).statistic, permutation_type="pairings",
        alternative="greater", n_resamples=math.inf,
    )  # fmt: skip
    assert ours.p_value == pytest.approx(theirs.pvalue)


def test_permutation_test_sampled_above_eight_methods() -> None:
    x = np.arange(9.0)
    monotone = permutation_correlation_test(x, x**2, "spearman", permutations=999, seed=1)
    assert not monotone.exact and monotone.permutations == 999
    # Only the identity and its reverse reach |ρ| = 1 (2 of 9! orderings): p = (1 + hits) / 1000.
    assert monotone.p_value == pytest.approx(1 / 1000) or monotone.p_value == pytest.approx(
        2 / 1000
    )
    rng = np.random.default_rng(1)
    orders = [rng.permutation(9) for _ in range(999)]
    y = np.random.default_rng(2).normal(size=9)
    observed = stats.spearmanr(x, y).statistic
    hits = sum(abs(stats.spearmanr(x, y[o]).statistic) >= abs(observed) - 1e-12 for o in orders)
    noise = permutation_correlation_test(x, y, "spearman", permutations=999, seed=1)
    assert noise.p_value == pytest.approx((1 + hits) / 1000)
    assert noise.p_value > 0.05


@pytest.mark.parametrize("direction", ["greater", "less", "two-sided"])
def test_paired_p_value_matches_scipy_ttest_rel(direction: str) -> None:
    rng = np.random.default_rng(10)
    control = rng.normal(0.5, 0.02, 6)
    treatment = control + rng.normal(0.004, 0.01, 6)
    d = paired_difference(dict(enumerate(treatment)), dict(enumerate(control)))
    reference = stats.ttest_rel(treatment, control, alternative=direction).pvalue
    assert paired_p_value(d, direction) == pytest.approx(reference)


def test_paired_p_value_of_equivalence_is_the_larger_one_sided_p() -> None:
    rng = np.random.default_rng(11)
    differences = rng.normal(0.005, 0.01, 8)
    d = paired_difference(dict(enumerate(differences)), dict.fromkeys(range(8), 0.0))
    above = stats.ttest_1samp(differences, -0.02, alternative="greater").pvalue
    below = stats.ttest_1samp(differences, 0.02, alternative="less").pvalue
    assert paired_p_value(d, "equivalent", 0.02) == pytest.approx(max(above, below))
    assert math.isnan(paired_p_value(paired_difference({0: 1.0}, {0: 0.5}), "greater"))
    with pytest.raises(ValueError, match="margin"):
        paired_p_value(d, "equivalent")


def slow_holm_rejections(p_values, alpha):
    """Holm's procedure as he wrote it: walk the sorted p-values, reject while p₍ₖ₎ ≤ α/(m − k + 1)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = set()
    for k, i in enumerate(order, start=1):
        if p_values[i] > alpha / (len(p_values) - k + 1):
            break
        rejected.add(i)
    return rejected


def test_holm_adjust_by_hand_and_against_the_step_down_loop() -> None:
    # Sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → kept at 0.06.
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    rng = np.random.default_rng(12)
    for _ in range(200):
        p = rng.uniform(0, 0.1, rng.integers(1, 12)).tolist()
        adjusted = holm_adjust(p)
        for alpha in (0.01, 0.05, 0.1):
            assert {i for i, q in enumerate(adjusted) if q <= alpha} == slow_holm_rejections(
                p, alpha
            )
        assert all(q >= v for q, v in zip(adjusted, p, strict=True)) and max(adjusted) <= 1


def test_holm_adjust_leaves_nan_out_of_the_family() -> None:
    adjusted = holm_adjust([0.02, math.nan, 0.01])
    assert math.isnan(adjusted[1]) and adjusted[0] == pytest.approx(0.02)
    assert adjusted[2] == pytest.approx(0.02)


@pytest.mark.parametrize(("std", "n"), [(0.01, 5), (0.004, 9)])
def test_minimum_detectable_effect_has_the_stated_power_by_simulation(std: float, n: int) -> None:
    effect = minimum_detectable_effect(std, n)
    rng = np.random.default_rng(13)
    trials = 20000
    differences = rng.normal(effect, std, size=(trials, n))
    detected = stats.ttest_1samp(differences, 0.0, axis=1).pvalue < 0.05
    power = detected.mean()
    assert abs(power - 0.8) < 4 * math.sqrt(0.8 * 0.2 / trials)
    approximation = (stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * std / math.sqrt(n)
    assert effect == pytest.approx(approximation, rel=0.05)


def test_minimum_detectable_effect_shrinks_with_seeds() -> None:
    effects = [minimum_detectable_effect(0.01, n) for n in (2, 3, 5, 8, 20)]
    assert effects == sorted(effects, reverse=True)
    assert math.isnan(minimum_detectable_effect(0.01, 1))
    # Two seeds (1 degree of freedom), where scipy's noncentral t gives NaN: the t approximation.
    approximation = (stats.t.ppf(0.975, 1) + stats.t.ppf(0.8, 1)) * 0.01 / math.sqrt(2)
    assert effects[0] == pytest.approx(approximation)
