"""When a run has converged: the study's stopping rule, a pure function of the evaluation history.

**Rule.** Let n be the number of evaluations so far and w = ⌈n/4⌉ (the last quarter of them,
at least one). Stop when the run has trained at least ``min_epochs`` epochs, has n ≥ 4
evaluations, and none of the last w evaluations sets a new best of the monitored metric (the
validation Recall@1): max over the last w ≤ max over the first n − w (+ ``min_delta``). The
patience grows with the run: a run whose best came at evaluation p stops at the first n with
n − ⌈n/4⌉ ≥ p, i.e. after about p/3 more evaluations.

**Last-quarter gain** = best over all n evaluations − best over the first n − w: 0 for a run the
rule stopped, > 0 for one still improving when it ended (at its epoch cap).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

MIN_EVALUATIONS = 4
QUARTER = 0.25


def _values(history: Sequence[Mapping[str, Any]], metric: str) -> list[float]:
    """The metric at each evaluation; NaN or missing count as no improvement."""
    values = []
    for row in history:
        value = row.get(metric)
        values.append(float(value) if value is not None else math.nan)
    return values


def _split(values: list[float], fraction: float) -> tuple[list[float], list[float]]:
    """(first n − w, last w) with w = ⌈fraction·n⌉, at least 1."""
    tail = max(1, math.ceil(fraction * len(values)))
    return values[:-tail], values[-tail:]


def _best(values: list[float], lower_is_better: bool) -> float:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan
    return min(finite) if lower_is_better else max(finite)


def last_quarter_gain(
    history: Sequence[Mapping[str, Any]],
    metric: str = "val/recall@1",
    *,
    lower_is_better: bool = False,
    fraction: float = QUARTER,
) -> float:
    """Best over all evaluations minus best over all but the last quarter (NaN below 2 evaluations
    or without finite values before the last quarter); with ``lower_is_better`` the sign is
    flipped so a positive gain is always an improvement."""
    values = _values(history, metric)
    if len(values) < 2:
        return math.nan
    head, _ = _split(values, fraction)
    overall, before = _best(values, lower_is_better), _best(head, lower_is_better)
    gain = overall - before
    return -gain if lower_is_better else gain


def should_stop(
    history: Sequence[Mapping[str, Any]],
    metric: str = "val/recall@1",
    *,
    min_epochs: int = 0,
    min_evaluations: int = MIN_EVALUATIONS,
    min_delta: float = 0.0,
    lower_is_better: bool = False,
    fraction: float = QUARTER,
) -> bool:
    """The module's rule on ``history`` (one mapping per evaluation, with ``epoch`` and
    ``metric``), in evaluation order."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if len(history) < max(min_evaluations, 2):
        return False
    if int(history[-1].get("epoch", 0)) < min_epochs:
        return False
    gain = last_quarter_gain(history, metric, lower_is_better=lower_is_better, fraction=fraction)
    if math.isnan(gain):
        return False
    return gain <= min_delta
