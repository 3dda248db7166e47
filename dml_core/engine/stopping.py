"""Which evaluation of a run is its best, and when a run has converged: pure functions of the
evaluation history, shared by the trainer (``best``, ``early_stop``), ``report`` and the study.

**Selection.** The selected evaluation of a run for a metric is the first one whose value beats
every earlier value (``dml_core.metrics.direction.improves``: higher is better except for ρ@k,
π_ratio and uniformity; NaN never beats anything): the best value, ties to the earliest. This is
the trainer's ``best.safetensors`` rule folded over the whole history (``best_index``).

**Rule.** Let n be the number of evaluations so far and w = ⌈f·n⌉ (the last fraction f of them,
a quarter by default, at least one). Stop when the run has trained at least ``min_epochs``
epochs, has n ≥ 4 evaluations, and the last w evaluations improve the monitored metric (the run's
selection metric, ``--best-metric`` on the selection split) by no more than ``min_delta`` over
the best of the first n − w. The patience grows with the run: a run whose best came at evaluation
p stops at the first n with n − ⌈n/4⌉ ≥ p, i.e. after about p/3 more evaluations.

**Last-quarter gain** = best over all n evaluations − best over the first n − w: 0 for a run the
rule stopped, > 0 for one still improving when it ended (at its epoch cap).

**From recovery** (``from_recovery``). A freshly initialised head on a pretrained trunk can first
pull the embedding down: validation falls for a few epochs before it climbs (the first glyphs
fine-tune study stopped normalised softmax seed 0 in such a dip and reported its first
evaluation). With this option the rule and the gain look only at the evaluations from the first
one that improves on the run's first evaluation; before that the run does not stop (its cap
still bounds it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from dml_core.metrics.direction import improves

MIN_EVALUATIONS = 4
QUARTER = 0.25
_METRIC_OF_DIRECTION = {True: "rho@2", False: "recall@1"}
"""A metric that improves downwards / upwards, for ``best_index`` when only the direction is given."""


def best_index(values: Sequence[float | None], metric: str) -> int | None:
    """Index of the selected value of ``metric`` (best, ties to the earliest; None and NaN never
    best), None when no value is finite: the trainer's ``improves`` applied in order."""
    best: float | None = None
    chosen = None
    for index, value in enumerate(values):
        value = math.nan if value is None else float(value)
        if improves(metric, value, best):
            best, chosen = value, index
    return chosen


def selected_row(history: Sequence[Mapping[str, Any]], metric: str) -> Mapping[str, Any] | None:
    """The evaluation (one mapping per evaluation) at ``best_index`` of ``metric``, else None."""
    index = best_index([row.get(metric) for row in history], metric)
    return None if index is None else history[index]


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
    """The selected value (``best_index``) of ``values``; NaN when none is finite."""
    index = best_index(values, _METRIC_OF_DIRECTION[lower_is_better])
    return math.nan if index is None else values[index]


def recovered_history(
    history: Sequence[Mapping[str, Any]], metric: str, *, lower_is_better: bool = False
) -> Sequence[Mapping[str, Any]]:
    """The evaluations from the first one that improves on the first evaluation (empty when none
    does yet): what ``from_recovery`` looks at."""
    values = _values(history, metric)
    if not values:
        return history
    direction = _METRIC_OF_DIRECTION[lower_is_better]
    start = (
        values[0] if math.isfinite(values[0]) else None
    )  # a NaN start: any finite value beats it
    for index in range(1, len(values)):
        if improves(direction, values[index], start):
            return history[index:]
    return history[:0]


def last_quarter_gain(
    history: Sequence[Mapping[str, Any]],
    metric: str = "val/recall@1",
    *,
    lower_is_better: bool = False,
    fraction: float = QUARTER,
    from_recovery: bool = False,
) -> float:
    """Best over all evaluations minus best over all but the last quarter (NaN below 2 evaluations
    or without finite values before the last quarter); with ``lower_is_better`` the sign is
    flipped so a positive gain is always an improvement; with ``from_recovery`` over
    ``recovered_history`` (NaN before the recovery)."""
    if from_recovery:
        history = recovered_history(history, metric, lower_is_better=lower_is_better)
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
    from_recovery: bool = False,
) -> bool:
    """The module's rule on ``history`` (one mapping per evaluation, with ``epoch`` and
    ``metric``), in evaluation order; ``min_evaluations`` counts from the recovery with
    ``from_recovery``."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if history and int(history[-1].get("epoch", 0)) < min_epochs:
        return False
    if from_recovery:
        history = recovered_history(history, metric, lower_is_better=lower_is_better)
    if len(history) < max(min_evaluations, 2):
        return False
    gain = last_quarter_gain(history, metric, lower_is_better=lower_is_better, fraction=fraction)
    if math.isnan(gain):
        return False
    return gain <= min_delta
