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
from collections.abc import Mapping
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
