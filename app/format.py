"""One way to show a metric's value, on every page: four decimals, ties rounded half up on the
value's shortest decimal form (0.83675 → 0.8368).

Python's ``f"{x:.4f}"`` and the browser's ``%.4f`` round the binary value, which for 0.83675 lies
just below the tie (0.8367), and Streamlit's default table formatting rounds it the other way, so one
checkpoint's Recall@1 read 0.8368 on Inspect and 0.8367 on Compare. Text goes through
:func:`metric_text`; a table keeps numbers (they sort) passed through :func:`rounded` and shown with
:func:`number_column`, whose ``%.4f`` of an already-rounded value cannot round again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

DIGITS = 4
"""Decimals of every metric value the app shows."""
MISSING = "—"
"""What a value that is not a finite number reads as."""


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def rounded(value: Any, digits: int = DIGITS) -> Any:
    """``value`` rounded half up to ``digits`` decimals on its shortest decimal form (``repr``);
    anything but a finite number is returned as it is (NaN, None, text).

    >>> rounded(0.83675), rounded(-0.00005), rounded(float("nan"))
    (0.8368, -0.0001, nan)
    """
    if not _is_number(value) or not math.isfinite(value):
        return value
    step = Decimal(1).scaleb(-digits)
    return float(Decimal(repr(float(value))).quantize(step, rounding=ROUND_HALF_UP))


def metric_text(value: Any, digits: int = DIGITS, *, signed: bool = False) -> str:
    """A metric value as text: :func:`rounded`, then exactly ``digits`` decimals (``+`` before a
    positive difference with ``signed``); a value that is not a finite number reads ``—``.

    >>> metric_text(0.83675), metric_text(0.1, signed=True), metric_text(None)
    ('0.8368', '+0.1000', '—')
    """
    if not _is_number(value) or not math.isfinite(value):
        return MISSING
    return f"{rounded(value, digits):{'+' if signed else ''}.{digits}f}"


def rounded_values(values: Mapping[str, Any], digits: int = DIGITS) -> dict[str, Any]:
    """Every value of ``values`` through :func:`rounded` (a table's column, before drawing)."""
    return {key: rounded(value, digits) for key, value in values.items()}


def number_column(label: str | None = None, *, signed: bool = False, **options: Any) -> Any:
    """``st.column_config.NumberColumn`` showing :data:`DIGITS` decimals (``%+.4f`` with
    ``signed``); give it values passed through :func:`rounded`."""
    import streamlit as st

    return st.column_config.NumberColumn(
        label, format=f"%{'+' if signed else ''}.{DIGITS}f", **options
    )


# --- which metrics, in which order, under which names ----------------------------------

RETRIEVAL_METRICS = ("map@r", "r_precision", "map_c", "nmi", "f1")
"""After Recall@k (ascending k), in this order, wherever metrics are tabled."""
EMBEDDING_SPACE_METRICS = ("pi_intra", "pi_inter", "pi_ratio", "uniformity")
"""After ρ@k (ascending k), in this order."""
COUNT_LABELS = {
    "num_items": "items",
    "num_classes": "classes",
    "num_queries": "queries",
    "num_gallery": "gallery items",
    "num_lone_queries": "lone queries (class of one)",
    "num_truncated_queries": "truncated queries (class > max_k)",
    "neighbors_searched": "neighbours searched (k)",
}
"""Bookkeeping values of a metric dict (not metrics), in table order, with the names shown."""
COUNT_METRICS = frozenset(COUNT_LABELS)


def _at_k(name: str, family: str) -> int | None:
    """``k`` of ``family@k`` (``recall@4`` → 4), else None."""
    head, _, k = name.partition("@")
    return int(k) if head == family and k.isdigit() else None


def metric_order(keys: Iterable[str]) -> list[str]:
    """The one metric order of every table (with or without a ``split/`` prefix): Recall@k by
    ascending k, MAP@R, R-precision, MAP@C, NMI, F1, then ρ@k by ascending k, π_intra, π_inter,
    π_ratio, uniformity, then unknown names alphabetically, then the counts (``COUNT_LABELS``
    order). Equal metrics of different splits keep alphabetical split order; duplicates drop."""

    def rank(key: str) -> tuple[int, int, str]:
        bare = key.rsplit("/", 1)[-1]
        if (k := _at_k(bare, "recall")) is not None:
            return (0, k, key)
        if bare in RETRIEVAL_METRICS:
            return (1, RETRIEVAL_METRICS.index(bare), key)
        if (k := _at_k(bare, "rho")) is not None:
            return (2, k, key)
        if bare in EMBEDDING_SPACE_METRICS:
            return (3, EMBEDDING_SPACE_METRICS.index(bare), key)
        if bare in COUNT_LABELS:
            return (5, list(COUNT_LABELS).index(bare), key)
        return (4, 0, key)

    return sorted(dict.fromkeys(keys), key=rank)


def metric_label(key: str) -> str:
    """The name a table shows: counts readable (``test/num_items`` → ``test/items``), metrics
    as stored (``recall@1``, the name the CLI, reports and docs use)."""
    split, _, bare = key.rpartition("/")
    label = COUNT_LABELS.get(bare, bare)
    return f"{split}/{label}" if split else label
