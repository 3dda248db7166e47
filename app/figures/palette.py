"""Colours and the compact layout every app figure shares."""

from __future__ import annotations

import numpy as np
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


LEGEND_CLASSES = 40
"""Up to this many classes each gets its own colour and legend entry; beyond, class colours are
hashed into :data:`HASHED_COLORS` colours and the class name shows on hover only."""
HASHED_COLORS = 64


def class_palette(count: int) -> list[str]:
    """The colours a projection of ``count`` classes uses (:func:`class_color_index` picks one)."""
    return class_colors(count if count <= LEGEND_CLASSES else HASHED_COLORS)


def class_color_index(labels: np.ndarray, count: int) -> np.ndarray:
    """Per item, its colour's position in :func:`class_palette`: the label itself for up to
    :data:`LEGEND_CLASSES` classes, else a multiplicative hash of it (Knuth's 2654435761), so
    neighbouring labels get unrelated colours and a class keeps its colour whatever is shown."""
    labels = np.asarray(labels, dtype=np.int64)
    if count <= LEGEND_CLASSES:
        return np.clip(labels, 0, max(count - 1, 0)).astype(np.uint8)
    hashed = (labels * 2654435761) % (1 << 32)
    return ((hashed >> 16) % HASHED_COLORS).astype(np.uint8)


def step_colorscale(colors: list[str]) -> list[list[object]]:
    """A plotly colorscale where value ``i`` (with ``cmin = -0.5``, ``cmax = len - 0.5``) is
    exactly ``colors[i]``: one WebGL trace draws many classes from a small integer array."""
    count = len(colors)
    scale: list[list[object]] = []
    for position, color in enumerate(colors):
        scale += [[position / count, color], [(position + 1) / count, color]]
    return scale


def compact(figure: go.Figure, height: int = 360) -> go.Figure:
    """``figure`` at ``height`` px with thin margins (room for a one-line title on top)."""
    figure.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure
