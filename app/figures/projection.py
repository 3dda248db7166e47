"""2-D projections of an embedding: the plain class-coloured scatter, the shared frame of aligned
layouts, and Inspect's projection with its colour modes, faded classes and selection marks.

Every trace's ``customdata`` holds item indices, so a click or lasso maps back to items whatever
trace it hits. No figure sets a drag mode: Streamlit then starts in pan mode, where a click
selects one point (in box/lasso mode clicks only start a drag)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from app.figures.palette import (
    CLASS_COLORSCALE,
    FADED,
    HIT_BORDER,
    LONE_COLOR,
    MISS_BORDER,
    class_colors,
    compact,
)

COLOR_MODES = ("class", "Recall@1 hit/miss", "AP@R", "nearest wrong class")
"""How the Inspect projection colours its points."""
NEIGHBOR_RING = {"size": 13, "color": "rgba(0,0,0,0)", "line": {"width": 2, "color": "#111"}}
SELECTED_STAR = {
    "size": 18,
    "symbol": "star",
    "color": "#ffd400",
    "line": {"width": 1.5, "color": "#111"},
}


def _bare_axes(figure: go.Figure) -> None:
    figure.update_xaxes(showticklabels=False)
    figure.update_yaxes(showticklabels=False, scaleanchor="x")


def projection_figure(
    coordinates: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str] | None = None,
    *,
    title: str = "",
    hover: Sequence[str] | None = None,
    extent: tuple[float, float, float, float] | None = None,
) -> go.Figure:
    """2-D projection coloured by class; one trace, so a selection's point indices are item rows.
    ``extent`` (x0, x1, y0, y1) fixes the axes, so aligned projections side by side share one
    frame (see :func:`common_extent`); the equal aspect then narrows the plot area, never widens
    the ranges (plotly would keep a widened range and zoom out at each resize)."""
    labels = np.asarray(labels)
    names = [class_names[int(v)] if class_names else str(int(v)) for v in labels]
    text = list(hover) if hover is not None else [f"#{i} · {n}" for i, n in enumerate(names)]
    figure = go.Figure(
        go.Scattergl(
            x=coordinates[:, 0],
            y=coordinates[:, 1],
            mode="markers",
            marker={"color": labels, "colorscale": CLASS_COLORSCALE, "size": 6, "opacity": 0.8},
            text=text,
            customdata=np.arange(len(labels)),
            hovertemplate="%{text}<extra></extra>",
        )
    )
    figure.update_layout(title=title)
    _bare_axes(figure)
    if extent is not None:
        figure.update_xaxes(range=list(extent[:2]), constrain="domain")
        figure.update_yaxes(range=list(extent[2:]), constrain="domain")
    compact(figure, 420)
    figure.update_layout(margin={"t": 40 + 20 * title.count("<br>")})  # room for each title line
    return figure


def common_extent(layouts: Sequence[np.ndarray], pad: float = 0.04) -> tuple[float, ...]:
    """(x0, x1, y0, y1) holding every point of ``layouts`` with a ``pad`` fraction of margin."""
    points = np.concatenate([np.asarray(layout, dtype=np.float64) for layout in layouts])
    low, high = points.min(axis=0), points.max(axis=0)
    margin = pad * np.maximum(high - low, 1e-9)
    low, high = low - margin, high + margin
    return float(low[0]), float(high[0]), float(low[1]), float(high[1])


class _Points:
    """Adds marker traces of chosen item rows to one figure, with shared hover text."""

    def __init__(self, coordinates: np.ndarray, labels: np.ndarray, class_names: Sequence[str]):
        self.coordinates, self.labels, self.class_names = coordinates, labels, class_names
        self.hover = np.array(
            [f"#{i} · {self.name_of(int(label))}" for i, label in enumerate(labels)], dtype=object
        )
        self.figure = go.Figure()

    def name_of(self, label: int) -> str:
        return self.class_names[label] if 0 <= label < len(self.class_names) else str(label)

    def add(self, rows: np.ndarray, name: str, marker: dict, **extra: object) -> None:
        if rows.size == 0:
            return
        self.figure.add_trace(
            go.Scattergl(
                x=self.coordinates[rows, 0],
                y=self.coordinates[rows, 1],
                mode="markers",
                name=name,
                marker={"size": 6, "opacity": 0.85, **marker},
                text=self.hover[rows],
                customdata=rows,
                hovertemplate="%{text}<extra></extra>",
                **extra,
            )
        )


def _by_hits(points: _Points, visible: np.ndarray, hits: np.ndarray) -> None:
    for name, value, color in (("hit", 1.0, HIT_BORDER), ("miss", 0.0, MISS_BORDER)):
        points.add(visible[hits[visible] == value], f"Recall@1 {name}", {"color": color})
    points.add(visible[np.isnan(hits[visible])], "lone query", {"color": LONE_COLOR})


def _by_average_precision(points: _Points, visible: np.ndarray, values: np.ndarray) -> None:
    finite = visible[np.isfinite(values[visible])]
    scale = {"colorscale": "Viridis", "cmin": 0, "cmax": 1}
    bar = {"title": {"text": "AP@R"}, "thickness": 12}
    points.add(
        finite, "AP@R", {"color": values[finite], **scale, "colorbar": bar}, showlegend=False
    )
    points.add(visible[~np.isfinite(values[visible])], "lone query", {"color": LONE_COLOR})


def _by_group(points: _Points, visible: np.ndarray, groups: np.ndarray, prefix: str) -> None:
    """One legend entry per group (a class label; -1: none), in the class's colour."""
    colors = class_colors(len(points.class_names))
    for group in np.unique(groups[visible]):
        rows = visible[groups[visible] == group]
        if group >= 0:
            points.add(
                rows,
                prefix + points.name_of(int(group)),
                {"color": colors[int(group) % len(colors)]},
            )
        else:
            points.add(rows, prefix + "none", {"color": LONE_COLOR})


def inspect_projection_figure(
    coordinates: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    color_by: str = "class",
    hits: np.ndarray | None = None,
    average_precision: np.ndarray | None = None,
    nearest_wrong: np.ndarray | None = None,
    shown_classes: Sequence[int] | None = None,
    selected: int | None = None,
    neighbors: Sequence[int] = (),
    title: str = "",
) -> go.Figure:
    """The Inspect projection: points coloured by ``color_by`` (:data:`COLOR_MODES`) with a
    legend (a colour bar for AP@R); classes outside ``shown_classes`` faded grey; the
    ``selected`` item a star, its ``neighbors`` ringed."""
    labels = np.asarray(labels)
    points = _Points(np.asarray(coordinates), labels, class_names)
    shown = (
        np.ones(len(labels), bool)
        if shown_classes is None
        else np.isin(labels, list(shown_classes))
    )
    points.add(np.flatnonzero(~shown), "other classes", {"color": FADED}, hoverinfo="skip")
    visible = np.flatnonzero(shown)
    if color_by == "Recall@1 hit/miss" and hits is not None:
        _by_hits(points, visible, hits)
    elif color_by == "AP@R" and average_precision is not None:
        _by_average_precision(points, visible, average_precision)
    elif color_by == "nearest wrong class" and nearest_wrong is not None:
        groups = np.array([labels[j] if j >= 0 else -1 for j in nearest_wrong])
        _by_group(points, visible, groups, "nearest wrong: ")
    else:
        _by_group(points, visible, labels, "")
    if neighbors:
        points.add(np.asarray(list(neighbors), dtype=np.int64), "its neighbours", NEIGHBOR_RING)
    if selected is not None:
        points.add(np.array([selected]), f"selected #{selected}", SELECTED_STAR)
    figure = points.figure
    figure.update_layout(
        title=title,
        legend={"itemsizing": "constant", "font": {"size": 11}},
        uirevision="inspect-projection",
    )
    _bare_axes(figure)
    return compact(figure, 460)
