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
