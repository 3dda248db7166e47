"""The study's convergence rule on synthetic evaluation histories."""

from __future__ import annotations

import math

import pytest

from dml_core.engine.stopping import last_quarter_gain, should_stop


def history(values: list[float], metric: str = "val/recall@1", every: int = 1) -> list[dict]:
    return [{"epoch": every * (i + 1), metric: v} for i, v in enumerate(values)]


def test_still_rising_run_does_not_stop_and_shows_its_gain() -> None:
    rising = history([0.30, 0.40, 0.45, 0.50, 0.52, 0.55, 0.56, 0.58])
    assert not should_stop(rising)
    # Last quarter = last 2 evaluations: best 0.58 against 0.55 before them.
    assert last_quarter_gain(rising) == pytest.approx(0.03)


def test_plateau_stops_once_the_last_quarter_has_no_new_best() -> None:
    values = [0.30, 0.40, 0.50, 0.49, 0.50, 0.48]
    # 6 evaluations, last ⌈6/4⌉ = 2 (0.50, 0.48) do not beat 0.50: stop, gain 0.
    assert should_stop(history(values))
    assert last_quarter_gain(history(values)) == 0.0
    # One evaluation earlier (5, last 2 = 0.49, 0.50 against 0.50 before: tie is no new best).
    assert should_stop(history(values[:5]))
    # 4 evaluations: the last one (0.49) does not beat 0.50 either.
    assert should_stop(history(values[:4]))
    # 3 evaluations are below the minimum.
    assert not should_stop(history(values[:3]))


def test_patience_grows_with_the_run() -> None:
    """Best at evaluation 12 of 16: the last ⌈16/4⌉ = 4 hold no new best → stop; a best at 13
    lies inside the last quarter → keep going."""
    base = [0.1 + 0.01 * i for i in range(12)] + [0.2, 0.2, 0.2, 0.2]
    assert should_stop(history(base))
    later_best = [*base[:12], 0.3, 0.2, 0.2, 0.2]
    assert not should_stop(history(later_best))
    assert last_quarter_gain(history(later_best)) == pytest.approx(0.3 - 0.21)


def test_min_epochs_and_min_delta() -> None:
    flat = history([0.5, 0.5, 0.5, 0.5], every=2)  # epochs 2, 4, 6, 8
    assert should_stop(flat, min_epochs=8)
    assert not should_stop(flat, min_epochs=10)
    tiny_gain = history([0.5, 0.5, 0.5, 0.501])
    assert not should_stop(tiny_gain)
    assert should_stop(tiny_gain, min_delta=0.002)


def test_lower_is_better_and_missing_values() -> None:
    falling = history([2.0, 1.5, 1.2, 1.0], metric="val/pi_ratio")
    assert last_quarter_gain(falling, "val/pi_ratio", lower_is_better=True) == pytest.approx(0.2)
    assert not should_stop(falling, "val/pi_ratio", lower_is_better=True)
    assert should_stop(falling, "val/pi_ratio")  # read as higher-is-better it peaked at once
    # NaN in the last quarter is no improvement; no finite value before it: no decision.
    assert should_stop(history([0.4, 0.5, 0.45, math.nan]))
    assert not should_stop(history([math.nan, math.nan, math.nan, 0.5]))
    assert math.isnan(last_quarter_gain(history([0.5])))
    assert not should_stop([{"epoch": 1}, {"epoch": 2}, {"epoch": 3}, {"epoch": 4}])


def test_bad_fraction_is_refused() -> None:
    with pytest.raises(ValueError, match="fraction"):
        should_stop(history([0.1] * 8), fraction=1.0)


def test_from_recovery_does_not_stop_a_run_in_its_first_dip() -> None:
    """The first fine-tune study's softmax seed 0: validation MAP@R fell for 4 evaluations after the
    new head started; the plain rule stopped it at epoch 8 with its first evaluation as best."""
    dip = history([0.4462, 0.43498, 0.4203, 0.39929, 0.38443, 0.39271, 0.41119, 0.4191], "v")
    assert should_stop(dip, "v", min_epochs=8)
    assert not should_stop(dip, "v", min_epochs=8, from_recovery=True)
    assert math.isnan(last_quarter_gain(dip, "v", from_recovery=True))
    # Recovered at 0.45 (evaluation 9), then a plateau: the rule counts from the recovery, so it
    # needs 4 evaluations from there and a last quarter without a new best.
    recovered = history([*[r["v"] for r in dip], 0.45, 0.47, 0.48, 0.48], "v")
    assert not should_stop(recovered[:11], "v", min_epochs=8, from_recovery=True)
    assert should_stop(recovered, "v", min_epochs=8, from_recovery=True)
    # A first evaluation without a value is beaten by the first finite one.
    assert should_stop(history([math.nan, 0.4, 0.5, 0.5, 0.5, 0.5]), from_recovery=True)
    # A run that improves at once drops only its first evaluation.
    rising = history([0.30, 0.40, 0.50, 0.49, 0.50, 0.48])
    assert should_stop(rising, from_recovery=True)
    assert last_quarter_gain(rising, from_recovery=True) == last_quarter_gain(rising[1:])


def test_from_recovery_matches_a_loop_over_the_trainer_rule() -> None:
    """``from_recovery`` equals the plain rule on the history cut at the first evaluation that
    beats the first one, found by an explicit loop, for random histories."""
    import random

    rng = random.Random(0)
    for _ in range(300):
        values = [round(rng.uniform(0.3, 0.6), 2) for _ in range(rng.randint(1, 14))]
        rows = history(values)
        cut = next((i for i in range(1, len(values)) if values[i] > values[0]), None)
        expected = False if cut is None else should_stop(rows[cut:])
        assert should_stop(rows, from_recovery=True) == expected
