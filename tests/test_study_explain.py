"""dml_core.study.explain on fabricated studies whose answer is known, and against slow loops."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from dml_core.config import TrainConfig
from dml_core.engine.events import EventLog
from dml_core.statistics import bootstrap_indices
from dml_core.study.explain import (
    GAP,
    TARGET,
    Point,
    candidate_metrics,
    explain,
    leave_one_method_out,
    points_from_folder,
    run_level_correlation,
    sentences,
)


def fabricated(relation, methods: int = 7, seeds: int = 5, noise: float = 0.002, extra=()):
    """Points whose method m has train ρ@2 = relation(m) and test R@1 = 0.5 + 0.01·m, plus a
    per-seed offset shared by all methods and a little run noise; methods in ``extra`` have 3
    more seeds."""
    rng = np.random.default_rng(0)
    offsets = rng.normal(0, 0.01, seeds + 3)
    points = []
    for m in range(methods):
        for s in range(seeds + (3 if m in extra else 0)):
            values = {
                "train/rho@2": relation(m, rng) + rng.normal(0, noise),
                TARGET: 0.5 + 0.01 * m + offsets[s] + rng.normal(0, noise),
                "train/recall@1": 0.9,
            }
            points.append(Point(f"method-{m}", s, values))
    return points


def test_perfectly_monotone_relation_is_resolved_and_ranks_every_method() -> None:
    e = explain(fabricated(lambda m, rng: 0.1 * m, extra=(1, 4)), "train/rho@2", resamples=500)
    assert e.spearman.estimate == pytest.approx(1.0) and e.spearman.low > 0.9
    assert e.runs_spearman.low > 0
    assert e.permutation.p_value < 0.01
    assert e.leave_one_out.exact == 7 and e.leave_one_out.within_one == 7
    assert e.seeds["method-1"] == 8 and e.seeds["method-0"] == 5
    text = " ".join(sentences(e))
    assert "methods with higher train ρ@2 had higher test Recall@1" in text
    assert "excludes 0" in text
    assert "outside the interval" in text  # the paper's −0.80 against +1


def test_anti_monotone_relation_reads_lower_and_matches_the_paper_sign() -> None:
    e = explain(fabricated(lambda m, rng: -0.1 * m), "train/rho@2", resamples=500)
    assert e.spearman.estimate == pytest.approx(-1.0) and e.spearman.high < -0.9
    assert all(row.sign == -1 for row in e.leave_one_out.rows)
    assert e.leave_one_out.exact == 7
    text = " ".join(sentences(e))
    assert "methods with lower train ρ@2 had higher test Recall@1" in text


def test_pure_noise_leaves_the_interval_around_zero() -> None:
    """x independent of the method: the means' order is noise, the interval must contain 0."""
    e = explain(
        fabricated(lambda m, rng: rng.normal(0, 0.05), noise=0.05), "train/rho@2", resamples=500
    )
    assert e.spearman.low < 0 < e.spearman.high
    assert e.runs_spearman.low < 0 < e.runs_spearman.high
    text = " ".join(sentences(e))
    assert "contains 0: the direction of the relation" in text
    assert "not resolved with 7 methods × 5 seeds" in text
    assert "excludes 0" not in text


def test_means_are_per_method_averages_of_the_paired_runs() -> None:
    points = fabricated(lambda m, rng: 0.1 * m)
    e = explain(points, "train/rho@2", resamples=50)
    for method, (x, y) in e.means.items():
        own = [p for p in points if p.method == method]
        assert x == pytest.approx(np.mean([p.values["train/rho@2"] for p in own]))
        assert y == pytest.approx(np.mean([p.values[TARGET] for p in own]))


def slow_run_level(runs, method, resamples, seed):
    """Seeds grouped by their methods, drawn stratum by stratum; every run of a drawn seed joins."""
    owners = {}
    for name, by_seed in runs.items():
        for s in by_seed:
            owners.setdefault(s, set()).add(name)
    strata = {}
    for s in sorted(owners):
        strata.setdefault(frozenset(owners[s]), []).append(s)
    strata = sorted(strata.values(), key=lambda seeds: seeds[0])
    draws = bootstrap_indices([len(s) for s in strata], resamples, np.random.default_rng(seed))
    correlate = stats.pearsonr if method == "pearson" else stats.spearmanr
    values = []
    for b in range(resamples):
        xs, ys = [], []
        for seeds, drawn in zip(strata, draws, strict=True):
            for i in drawn[b]:
                for by_seed in runs.values():
                    if seeds[i] in by_seed:
                        xs.append(by_seed[seeds[i]][0])
                        ys.append(by_seed[seeds[i]][1])
        values.append(correlate(xs, ys).statistic)
    return np.percentile(values, [2.5, 97.5])


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_run_level_correlation_matches_slow_reference(method: str) -> None:
    rng = np.random.default_rng(3)
    runs = {
        f"m{m}": {s: (m + rng.normal(), m + rng.normal()) for s in range(8 if m < 2 else 5)}
        for m in range(5)
    }
    result = run_level_correlation(runs, method, resamples=200, seed=4)
    xs = [v[0] for by in runs.values() for v in by.values()]
    ys = [v[1] for by in runs.values() for v in by.values()]
    correlate = stats.pearsonr if method == "pearson" else stats.spearmanr
    assert result.n == 31
    assert result.estimate == pytest.approx(correlate(xs, ys).statistic)
    assert (result.low, result.high) == pytest.approx(tuple(slow_run_level(runs, method, 200, 4)))


def test_leave_one_method_out_by_hand() -> None:
    # Test R@1 order d > c > b > a. x rises with it except that b and c are swapped.
    means = {"a": (0.0, 0.1), "b": (2.0, 0.2), "c": (1.0, 0.3), "d": (3.0, 0.4)}
    result = {row.method: row for row in leave_one_method_out(means).rows}
    assert all(row.sign == 1 for row in result.values())
    assert (result["a"].predicted, result["a"].actual) == (4, 4)
    assert (result["b"].predicted, result["b"].actual) == (2, 3)
    assert (result["c"].predicted, result["c"].actual) == (3, 2)
    assert (result["d"].predicted, result["d"].actual) == (1, 1)
    loo = leave_one_method_out(means)
    assert (loo.exact, loo.within_one) == (2, 4)
    assert loo.chance_within_one == pytest.approx((3 * 4 - 2) / 4)


def test_leave_one_method_out_chance_matches_enumeration() -> None:
    """Within-one hits of a uniformly random predicted rank, averaged over all true ranks."""
    m = 6
    hits = sum(abs(p - a) <= 1 for p, a in itertools.product(range(m), range(m))) / m
    means = {f"m{i}": (float(i), float(i)) for i in range(m)}
    assert leave_one_method_out(means).chance_within_one == pytest.approx(hits)


def test_a_sign_that_cannot_be_fitted_counts_as_a_miss() -> None:
    means = {"a": (1.0, 0.1), "b": (1.0, 0.2), "c": (1.0, 0.3)}  # x constant: no Spearman
    loo = leave_one_method_out(means)
    assert all(row.sign == 0 for row in loo.rows) and loo.exact == 0


def test_explain_refuses_fewer_than_three_methods() -> None:
    points = [p for p in fabricated(lambda m, rng: m) if p.method in ("method-0", "method-1")]
    with pytest.raises(ValueError, match="by 2 method"):
        explain(points, "train/rho@2")


def test_candidate_metrics_need_three_methods_and_add_the_gap() -> None:
    points = fabricated(lambda m, rng: m)
    points.append(Point("method-0", 0, {"train/pi_ratio": 0.3, TARGET: 0.5}))
    metrics = candidate_metrics(points)
    assert metrics[0] == "train/rho@2" and "train/pi_ratio" not in metrics
    assert "train/recall@1" in metrics


def write_run(folder, name, seed, loss, history):
    """A run directory as the trainer leaves it: config.json and eval events."""
    directory = folder / name
    directory.mkdir(parents=True)
    TrainConfig(loss=loss, seed=seed, best_metric="map@r").save(directory / "config.json")
    log = EventLog(directory / "events.jsonl")
    for epoch, metrics in enumerate(history, start=1):
        log.write("eval", epoch=epoch, step=10 * epoch, metrics=metrics)
    log.close()


def test_points_from_a_folder_of_runs_group_by_config_and_select_on_validation(tmp_path) -> None:
    for k, loss in enumerate(("margin", "triplet", "contrastive")):
        for seed in (0, 1):
            history = [
                {"val/map@r": 0.2, "val/recall@1": 0.9, TARGET: 0.4 + k / 10,
                 "train/rho@2": 0.5, "train/recall@1": 0.7},
                {"val/map@r": 0.3, "val/recall@1": 0.5, TARGET: 0.5 + k / 10,
                 "train/rho@2": 0.4 - k / 10, "train/recall@1": 0.8},
                {"val/map@r": 0.25, "val/recall@1": 0.95, TARGET: 0.6 + k / 10,
                 "train/rho@2": 0.3, "train/recall@1": 0.9},
            ]  # fmt: skip
            write_run(tmp_path, f"{loss}-{seed}", seed, loss, history)
    points = points_from_folder(tmp_path)
    assert len(points) == 6
    assert {p.method for p in points} == {"loss=margin", "loss=triplet", "loss=contrastive"}
    for p in points:  # the run's best_metric map@r picks epoch 2, not recall@1's epoch 3
        assert p.epoch == 2
        k = ("loss=margin", "loss=triplet", "loss=contrastive").index(p.method)
        assert p.values[TARGET] == pytest.approx(0.5 + k / 10)
        assert p.values[GAP] == pytest.approx(0.8 - (0.5 + k / 10))
        assert p.run_dir is not None and (p.run_dir / "config.json").is_file()
    e = explain(points, "train/rho@2", resamples=100)
    assert e.spearman.estimate == pytest.approx(-1.0)
    assert math.isfinite(e.permutation.p_value)
