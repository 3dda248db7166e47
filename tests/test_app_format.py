"""One formatter for metric values: ties rounded half up on the shortest decimal form, the same
text whether a page writes it or a table draws it."""

from __future__ import annotations

import doctest
import math

import pytest

from app import format as metric_format
from app.format import metric_text, rounded, rounded_values


def test_a_tie_rounds_up_where_python_formatting_rounds_down() -> None:
    assert f"{0.83675:.4f}" == "0.8367"  # the binary value lies just below the tie
    assert metric_text(0.83675) == "0.8368" and rounded(0.83675) == 0.8368
    assert metric_text(-0.83675) == "-0.8368"
    assert metric_text(0.33312365922234594) == "0.3331"


@pytest.mark.parametrize(
    ("value", "text"),
    [(1, "1.0000"), (0.0, "0.0000"), (1e-9, "0.0000"), (0.99995, "1.0000"), (12.34565, "12.3457")],
)
def test_exactly_four_decimals(value: float, text: str) -> None:
    assert metric_text(value) == text


def test_differences_carry_a_sign_and_missing_values_a_dash() -> None:
    assert metric_text(0.00005, signed=True) == "+0.0001"
    assert metric_text(-0.325, signed=True) == "-0.3250"
    for missing in (None, math.nan, math.inf, "n/a", True):
        assert metric_text(missing) == "—"


def test_rounded_keeps_what_is_not_a_number_and_rounds_a_column() -> None:
    assert math.isnan(rounded(math.nan)) and rounded(None) is None and rounded("x") == "x"
    assert rounded_values({"a": 0.83675, "b": None}) == {"a": 0.8368, "b": None}
    # What a table's %.4f then draws of a rounded value is that value's own four decimals.
    assert all(f"{rounded(v):.4f}" == metric_text(v) for v in (0.83675, 0.12345, 0.99995))


def test_doctests() -> None:
    assert doctest.testmod(metric_format).failed == 0
