"""Text and ticks of app figures: titles wrapped to a width, log and whole-number axes."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

import numpy as np

LEGEND_WIDTH = 34
"""Characters of a legend line that fit half the page at 1024 px (longer names wrap)."""
NUMBER_FORMAT = ".3~g"
"""d3 tick format: plain decimals (0.002, not 2m or 2µ)."""


def wrap_title(text: str, width: int) -> str:
    """``text`` HTML-escaped and broken into plotly title lines (``<br>``) of at most ``width``
    characters, after a ``/``, ``-``, ``_``, ``.`` or space where possible (plotly never wraps)."""
    pieces = re.findall(r"[^/_.\- ]*[/_.\- ]|[^/_.\- ]+", text)
    lines = [""]
    for piece in pieces:
        while len(piece) > width:  # a piece longer than a line: cut it
            if lines[-1]:
                lines.append("")
            lines[-1], piece = piece[:width], piece[width:]
            lines.append("")
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append("")
        lines[-1] += piece
    return "<br>".join(html.escape(line) for line in lines if line)


def log_axis(values: Sequence[float]) -> dict[str, object]:
    """Log-axis settings labelled at powers of ten only (``1e-3``, ``0.01``…), never at the
    minor ticks that plotly labels "2" and "5"; data spanning under 1.5 decades gets 1-2-5
    ticks written out in full (``0.02``, ``0.05``, ``0.1``)."""
    positive = [v for v in values if v > 0 and np.isfinite(v)]
    settings: dict[str, object] = {"type": "log", "exponentformat": "power"}
    if not positive:
        return settings
    smallest, largest = min(positive), max(positive)
    if np.log10(largest / smallest) >= 1.5:
        return {**settings, "dtick": 1, "minor": {"showgrid": True, "ticks": ""}}
    low, high = int(np.floor(np.log10(smallest))) - 1, int(np.ceil(np.log10(largest)))
    ticks = [m * 10.0**e for e in range(low, high + 1) for m in (1, 2, 5)]
    ticks = [t for t in ticks if smallest / 2.5 <= t <= largest * 2.5]
    return {
        **settings,
        "tickmode": "array",
        "tickvals": ticks,
        "ticktext": [f"{t:g}" for t in ticks],
    }


def integer_ticks(values: Sequence[float], max_ticks: int = 8) -> dict[str, object]:
    """x-axis settings for whole-number data (epochs, steps): ticks every 1, 2, 5, 10, 20, …
    (at most ``max_ticks`` of them) and a little room either side, so a single point sits
    mid-axis at a whole-number tick instead of between ticks labelled 1.5 and 2.5."""
    low, high = (min(values), max(values)) if len(values) else (0, 1)
    step = 1
    multipliers = iter((2, 2.5, 2) * 20)  # 1 → 2 → 5 → 10 → 20 → 50 → …
    while (high - low) / step > max_ticks:
        step = round(step * next(multipliers))
    room = min(step / 2, max(0.5, (high - low) * 0.03))
    return {
        "tickmode": "linear",
        "tick0": 0,
        "dtick": step,
        "range": [low - room, high + room],
    }
