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
    FADED,
    HIT_BORDER,
    LEGEND_CLASSES,
    LONE_COLOR,
    MISS_BORDER,
    class_color_index,
    class_palette,
    compact,
    step_colorscale,
)

COLOR_MODES = ("class", "Recall@1 hit/miss", "AP@R", "nearest wrong class")
"""How the Inspect projection colours its points."""
HOVER_FULL = 20_000
"""Up to this many items each point's hover text is ``#index · class``; beyond, the class name."""
HOVER_NAME_CHARS = 32
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
    """2-D projection coloured by class; one WebGL trace, so a selection's point indices are item
    rows. ``extent`` (x0, x1, y0, y1) fixes the axes, so aligned projections side by side share one
    frame (see :func:`common_extent`); the equal aspect then narrows the plot area, never widens
    the ranges (plotly would keep a widened range and zoom out at each resize)."""
    labels = np.asarray(labels)
    names = (
        list(class_names)
        if class_names
        else [str(v) for v in range(int(labels.max(initial=0)) + 1)]
    )
    rows = np.arange(len(labels))
    text, template = (
        (list(hover), "%{text}<extra></extra>")
        if hover is not None
        else (hover_text(rows, labels, names))
    )
    figure = go.Figure(
        go.Scattergl(
            x=coordinates[:, 0],
            y=coordinates[:, 1],
            mode="markers",
            marker={"size": 6, "opacity": 0.8, **class_marker(labels, len(names))},
            text=text,
            customdata=rows.astype(np.int32),
            hovertemplate=template,
            showlegend=False,
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


def class_marker(groups: np.ndarray, count: int) -> dict:
    """Marker settings colouring each point by its class (``groups``, labels 0 … count−1) from one
    small integer array and a step colour scale (:func:`app.figures.palette.class_color_index`)."""
    palette = class_palette(count)
    return {
        "color": class_color_index(groups, count),
        "colorscale": step_colorscale(palette),
        "cmin": -0.5,
        "cmax": len(palette) - 0.5,
    }


def hover_text(
    rows: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> tuple[list, str]:
    """Hover text of ``rows`` and its template. Up to :data:`HOVER_FULL` items each point carries
    ``#index · class``; beyond, the text is decimated server-side: the class name alone, cut to
    :data:`HOVER_NAME_CHARS` characters (the index comes from ``customdata``), so a 60,000-item
    figure stays a few hundred kB."""
    names = _names_array(class_names, labels)
    if len(labels) <= HOVER_FULL:
        text = [
            f"#{row} · {names[label]}"
            for row, label in zip(rows.tolist(), labels[rows].tolist(), strict=True)
        ]
        return text, "%{text}<extra></extra>"
    short = np.array(
        [n if len(n) <= HOVER_NAME_CHARS else n[: HOVER_NAME_CHARS - 1] + "…" for n in names],
        dtype=object,
    )
    return short[labels[rows]].tolist(), "#%{customdata} · %{text}<extra></extra>"


def _names_array(class_names: Sequence[str], labels: np.ndarray) -> np.ndarray:
    """Class names indexable by every label (a label without a name shows as its number)."""
    size = max(len(class_names), int(np.max(labels, initial=-1)) + 1)
    return np.array(
        [class_names[i] if i < len(class_names) else str(i) for i in range(size)], dtype=object
    )


def common_extent(layouts: Sequence[np.ndarray], pad: float = 0.04) -> tuple[float, ...]:
    """(x0, x1, y0, y1) holding every point of ``layouts`` with a ``pad`` fraction of margin."""
    points = np.concatenate([np.asarray(layout, dtype=np.float64) for layout in layouts])
    low, high = points.min(axis=0), points.max(axis=0)
    margin = pad * np.maximum(high - low, 1e-9)
    low, high = low - margin, high + margin
    return float(low[0]), float(high[0]), float(low[1]), float(high[1])


class _Points:
    """Adds marker traces of chosen item rows to one figure, with shared hover text (decimated for
    huge files, :func:`hover_text`)."""

    def __init__(self, coordinates: np.ndarray, labels: np.ndarray, class_names: Sequence[str]):
        self.coordinates, self.labels, self.class_names = coordinates, labels, class_names
        self.names = _names_array(class_names, labels)
        text, self.template = hover_text(np.arange(len(labels)), labels, class_names)
        self.hover = np.array(text, dtype=object)
        self.figure = go.Figure()

    def name_of(self, label: int) -> str:
        return str(self.names[label]) if 0 <= label < len(self.names) else str(label)

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
                customdata=rows.astype(np.int32),
                hovertemplate=self.template,
                **extra,
            )
        )

    def legend_entry(self, name: str, color: str) -> None:
        """A legend line without points (the points are in one colour-array trace)."""
        self.figure.add_trace(
            go.Scatter(
                x=[None], y=[None], mode="markers", name=name, marker={"color": color, "size": 8},
                showlegend=True, hoverinfo="skip",
            )
        )  # fmt: skip


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
    """Every point of a group (a class label; -1: none) in its class's colour, in ONE WebGL trace
    with a colour array; a legend line per group only up to :data:`LEGEND_CLASSES` classes (the
    class name is on hover and in the class filter)."""
    count = len(points.names)
    grouped = visible[groups[visible] >= 0]
    points.add(
        grouped,
        prefix.rstrip(": ") or "classes",
        class_marker(groups[grouped], count),
        showlegend=False,
    )
    points.add(visible[groups[visible] < 0], prefix + "none", {"color": LONE_COLOR})
    if count <= LEGEND_CLASSES:
        palette = class_palette(count)
        for group in np.unique(groups[grouped]).tolist():
            points.legend_entry(prefix + points.name_of(group), palette[group])


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
    """The Inspect projection: points coloured by ``color_by`` (:data:`COLOR_MODES`), classes in
    one WebGL trace with a colour array (a legend up to :data:`LEGEND_CLASSES` classes, a colour
    bar for AP@R); classes outside ``shown_classes`` faded grey; the ``selected`` item a star, its
    ``neighbors`` ringed."""
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
        nearest = np.asarray(nearest_wrong)
        groups = np.where(nearest >= 0, labels[np.maximum(nearest, 0)], -1)
        _by_group(points, visible, groups, "nearest wrong: ")
    else:
        _by_group(points, visible, labels, "")
    if len(neighbors):
        points.add(np.asarray(list(neighbors), dtype=np.int64), "its neighbours", NEIGHBOR_RING)
    if selected is not None:
        points.add(np.array([selected]), f"selected #{selected}", SELECTED_STAR)
    figure = points.figure
    figure.update_layout(
        title=title,
        legend={
            "itemsizing": "constant",
            "font": {"size": 11},
            "itemclick": False,  # a legend line has no points of its own to hide
            "itemdoubleclick": False,
        },
        uirevision="inspect-projection",
    )
    _bare_axes(figure)
    return compact(figure, 460)
