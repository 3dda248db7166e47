"""Colours and the compact layout every app figure shares."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.colors import sample_colorscale

QUERY_BORDER, HIT_BORDER, MISS_BORDER = "#1f77b4", "#2ca02c", "#d62728"
"""Borders of a query, a same-class neighbour (hit) and an other-class one (miss)."""
RUN_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
"""One colour per run or per line, in order."""
CLASS_COLORSCALE = "Turbo"
FADED = "rgba(150, 150, 150, 0.18)"
"""Points outside the shown classes."""
LONE_COLOR = "#999999"
"""Queries without a classmate (no hit or AP@R defined)."""
TOP_LEGEND = {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "title": {"text": ""}}


def run_color(index: int) -> str:
    """The ``index``-th colour of :data:`RUN_PALETTE`, cycling."""
    return RUN_PALETTE[index % len(RUN_PALETTE)]


def class_colors(count: int) -> list[str]:
    """``count`` colours spread over the Turbo scale, so neighbouring class indices differ."""
    if count <= 1:
        return [sample_colorscale(CLASS_COLORSCALE, [0.5])[0]]
    return sample_colorscale(CLASS_COLORSCALE, [0.05 + 0.9 * i / (count - 1) for i in range(count)])


def compact(figure: go.Figure, height: int = 360) -> go.Figure:
    """``figure`` at ``height`` px with thin margins (room for a one-line title on top)."""
    figure.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure
