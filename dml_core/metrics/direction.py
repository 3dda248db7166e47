"""Which way each metric improves, for picking a best epoch (trainer) and a best row (report).

ρ@k (spectral decay), π_ratio (intra/inter-class distance ratio) and uniformity (log of the mean
Gaussian potential, Wang & Isola 2020) are better when lower; every other metric (Recall@k, MAP@R,
NMI, F1, …) when higher. Keys may carry a split prefix (``test/rho@2``).
"""

from __future__ import annotations

import math

LOWER_IS_BETTER = ("rho@1", "rho@2", "pi_ratio", "uniformity")


def lower_is_better(metric: str) -> bool:
    """True for the metrics in ``LOWER_IS_BETTER``, with or without a ``split/`` prefix."""
    return metric.split("/")[-1] in LOWER_IS_BETTER


def improves(metric: str, value: float, best: float | None) -> bool:
    """Whether ``value`` beats ``best`` (None: nothing yet); a NaN or infinite value never does."""
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best if lower_is_better(metric) else value > best
