"""Pure figure builders: numpy in, plotly figures (or an HTML string) out. Tests call them directly."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from app.analysis import ConfusedPair, RetrievalRow
from app.settings import CURVE_METRICS, UNIT_INTERVAL_METRICS

QUERY_BORDER, HIT_BORDER, MISS_BORDER = "#1f77b4", "#2ca02c", "#d62728"
CURVE_PANELS = (("loss", "loss"), *CURVE_METRICS)
CURVE_PANELS_PER_ROW = 3
RUN_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
CLASS_COLORSCALE = "Turbo"
TOP_LEGEND = {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "title": {"text": ""}}
COLOR_MODES = ("class", "Recall@1 hit/miss", "AP@R", "nearest wrong class")
"""How the Inspect projection colours its points."""
FADED = "rgba(150, 150, 150, 0.18)"
LONE_COLOR = "#999999"


def _compact(figure: go.Figure, height: int = 360) -> go.Figure:
    figure.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure


LEGEND_WIDTH = 34
"""Characters of a legend line that fit half the page at 1024 px (longer names wrap)."""


def spectrum_figure(
    spectra: Mapping[str, np.ndarray], *, log_scale: bool = False, title: str = ""
) -> go.Figure:
    """Normalised singular values s̃_i = s_i / Σs (docs/DESIGN.md §3) against their rank, one line
    each in a distinct colour, the legend above the plot (it never narrows the axes)."""
    figure = go.Figure()
    everything: list[float] = []
    names = [wrap_title(name, LEGEND_WIDTH) for name in spectra]
    for index, (name, spectrum) in enumerate(zip(names, spectra.values(), strict=True)):
        values = np.asarray(spectrum, dtype=np.float64)
        everything += values.tolist()
        figure.add_trace(
            go.Scatter(
                x=np.arange(1, values.size + 1),
                y=values,
                mode="lines+markers",
                name=name,
                line={"color": RUN_PALETTE[index % len(RUN_PALETTE)]},
                marker={"size": 4},
            )
        )
    figure.update_xaxes(title="rank i")
    if log_scale:
        figure.update_yaxes(title="s̃_i (log)", **log_axis(everything))
    else:
        figure.update_yaxes(title="s̃_i")
    text = title or ("spectrum (log)" if log_scale else "spectrum")
    legend_rows = sum(name.count("<br>") + 1 for name in names)  # one entry per row when narrow
    figure.update_layout(
        title={"text": text, "y": 0.99, "yref": "container", "yanchor": "top"},
        legend=TOP_LEGEND,
        height=340 + 20 * legend_rows,
        margin={"l": 10, "r": 10, "t": 44 + 22 * legend_rows, "b": 10},
    )
    return figure


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
    the ranges (plotly would keep a widened range and zoom out at each resize). No drag mode is
    set: a click selects a point."""
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
    figure.update_xaxes(showticklabels=False)
    figure.update_yaxes(showticklabels=False, scaleanchor="x")
    if extent is not None:
        figure.update_xaxes(range=list(extent[:2]), constrain="domain")
        figure.update_yaxes(range=list(extent[2:]), constrain="domain")
    _compact(figure, 420)
    figure.update_layout(margin={"t": 40 + 20 * title.count("<br>")})  # room for each title line
    return figure


def common_extent(layouts: Sequence[np.ndarray], pad: float = 0.04) -> tuple[float, ...]:
    """(x0, x1, y0, y1) holding every point of ``layouts`` with a ``pad`` fraction of margin."""
    points = np.concatenate([np.asarray(layout, dtype=np.float64) for layout in layouts])
    low, high = points.min(axis=0), points.max(axis=0)
    margin = pad * np.maximum(high - low, 1e-9)
    low, high = low - margin, high + margin
    return float(low[0]), float(high[0]), float(low[1]), float(high[1])


def density_figure(rows: Sequence[Mapping[str, object]], title: str = "") -> go.Figure:
    """π_intra of each class against the cosine distance of its mean to the nearest other mean."""
    figure = go.Figure(
        go.Scatter(
            x=[row["distance to nearest class"] for row in rows],
            y=[row["pi_intra"] for row in rows],
            mode="markers",
            text=[f"{row['class']} (nearest: {row['nearest class']})" for row in rows],
            hovertemplate="%{text}<br>π_intra %{y:.3f}<br>to nearest %{x:.3f}<extra></extra>",
        )
    )
    figure.update_xaxes(title="distance to nearest class mean (1 − cos)")
    figure.update_yaxes(title="π_intra (mean intra-class 1 − cos)")
    figure.update_layout(title=title or "per-class density")
    return _compact(figure)


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


def curves_figure(
    curves: Mapping[str, Mapping[str, tuple[list[float], list[float]] | None]],
) -> go.Figure:
    """Training curves of several runs overlaid: ``curves[run][series] = (x, y)``, one panel
    each, three panels a row, the legend on top.

    A series that is None is undefined for that run (ρ@k of a ≤ k-dimensional embedding): the
    panel says "n/a" instead of plotting it. Recall and MAP@R axes span [0, 1]; the others start
    at 0 when their values are positive; x ticks are whole epochs (steps for the loss).
    """
    columns = CURVE_PANELS_PER_ROW
    rows = -(-len(CURVE_PANELS) // columns)
    figure = make_subplots(
        rows=rows,
        cols=columns,
        subplot_titles=[t for _, t in CURVE_PANELS],
        vertical_spacing=0.22,
        horizontal_spacing=0.08,
    )
    cells = [(index // columns + 1, index % columns + 1) for index in range(len(CURVE_PANELS))]
    for run_index, (run, series) in enumerate(curves.items()):
        color = RUN_PALETTE[run_index % len(RUN_PALETTE)]
        for panel, ((key, _), (row, col)) in enumerate(zip(CURVE_PANELS, cells, strict=True)):
            values = series.get(key, ([], []))
            if values is None:
                continue
            figure.add_trace(
                go.Scatter(
                    x=values[0],
                    y=values[1],
                    mode="lines+markers" if key != "loss" else "lines",
                    name=run,
                    legendgroup=run,
                    showlegend=panel == 0,
                    line={"color": color},
                ),
                row=row,
                col=col,
            )
    for panel, ((key, _), (row, col)) in enumerate(zip(CURVE_PANELS, cells, strict=True)):
        xs = [x for series in curves.values() for x in (series.get(key) or ([], []))[0]]
        ys = [y for series in curves.values() for y in (series.get(key) or ([], []))[1]]
        ticks = integer_ticks(xs, max_ticks=5)
        figure.update_xaxes(title="step" if key == "loss" else "epoch", **ticks, row=row, col=col)
        if key in UNIT_INTERVAL_METRICS:
            figure.update_yaxes(range=[0, 1.02], row=row, col=col)
        elif ys and min(ys) >= 0:
            figure.update_yaxes(rangemode="tozero", row=row, col=col)
        undefined = [run for run, series in curves.items() if key in series and series[key] is None]
        if undefined:
            note = f"n/a<br>needs more than<br>{key.rsplit('@', 1)[-1]} dimensions"
            if len(undefined) < len(curves):
                note += "<br>(" + ", ".join(undefined) + ")"
            suffix = "" if panel == 0 else str(panel + 1)
            x_domain = figure.layout[f"xaxis{suffix}"].domain
            y_domain = figure.layout[f"yaxis{suffix}"].domain
            figure.add_annotation(
                text=note,
                xref="paper",
                yref="paper",
                x=sum(x_domain) / 2,
                y=sum(y_domain) / 2,
                xanchor="center",
                yanchor="middle",
                showarrow=False,
                font={"size": 13, "color": "#555"},
            )
    figure.update_layout(legend={"orientation": "h", "yanchor": "bottom", "y": 1.08, "x": 0})
    figure.update_layout(height=260 * rows + 60, margin={"l": 10, "r": 10, "t": 70, "b": 10})
    return figure


def history_figure(history: Sequence[Mapping[str, float]], keys: Sequence[str]) -> go.Figure:
    """A checkpoint's stored metric history: one small plot per metric against the epoch, each
    on its own axis (π_ratio ≈ 2 and MAP@R ≈ 0.1 never share one); [0, 1] metrics span [0, 1]."""
    keys = list(keys) or ["epoch"]
    titles = dict(CURVE_METRICS)
    figure = make_subplots(
        rows=1,
        cols=len(keys),
        subplot_titles=[titles.get(key, key) for key in keys],
        horizontal_spacing=0.06,
    )
    epochs = [entry.get("epoch") for entry in history]
    for column, key in enumerate(keys, start=1):
        values = [entry.get(key) for entry in history]
        figure.add_trace(
            go.Scatter(
                x=epochs,
                y=values,
                name=titles.get(key, key),
                mode="lines+markers",
                line={"color": RUN_PALETTE[(column - 1) % len(RUN_PALETTE)]},
                showlegend=False,
            ),
            row=1,
            col=column,
        )
        numeric = [e for e in epochs if e is not None]
        figure.update_xaxes(title="epoch", **integer_ticks(numeric, max_ticks=4), row=1, col=column)
        if key in UNIT_INTERVAL_METRICS:
            figure.update_yaxes(range=[0, 1.02], row=1, col=column)
        elif all(v is not None and v >= 0 for v in values):
            figure.update_yaxes(rangemode="tozero", row=1, col=column)
    figure.update_layout(height=250, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure


def _cell(uri: str | None, color: str, lines: Sequence[str], size: int = 72) -> str:
    """One labelled thumbnail (or, without an image, a box with the text) with a coloured border."""
    text = "<br>".join(html.escape(line) for line in lines)
    if uri is None:
        picture = (
            f'<div style="width:{size}px;height:{size}px;border:4px solid {color};'
            "display:flex;align-items:center;justify-content:center;font-size:11px;"
            f'box-sizing:content-box">{html.escape(lines[0])}</div>'
        )
    else:
        picture = (
            f'<img src="{uri}" width="{size}" height="{size}" style="border:4px solid {color};'
            'image-rendering:pixelated"/>'
        )
    return (
        '<figure style="margin:0 6px 6px 0;display:inline-block;text-align:center;'
        f'vertical-align:top;width:{size + 8}px">{picture}'
        '<figcaption style="font-size:11px;line-height:1.2;overflow:hidden;'
        f'text-overflow:ellipsis;white-space:nowrap">{text}</figcaption></figure>'
    )


def retrieval_grid_html(
    rows: Sequence[RetrievalRow],
    image_uri: Callable[[int], str] | None,
    class_name: Callable[[int], str] = str,
    caption: Callable[[RetrievalRow], str] | None = None,
    item_class: Callable[[int], int] | None = None,
) -> str:
    """Query (blue border) then its neighbours (green: same class, red: other), each labelled
    with its index, its class (when ``item_class`` maps an index to its label) and distance.
    Without ``image_uri`` the cells are text boxes."""

    def uri(index: int) -> str | None:
        return None if image_uri is None else image_uri(index)

    lines = []
    for row in rows:
        title = caption(row) if caption else f"query #{row.query}"
        cells = [_cell(uri(row.query), QUERY_BORDER, [title, class_name(row.query_label)])]
        for neighbor, distance, hit in zip(row.neighbors, row.distances, row.hits, strict=True):
            label = [f"#{neighbor}"]
            if item_class is not None:
                label.append(class_name(item_class(neighbor)))
            label.append(f"d={distance:.3f}")
            cells.append(_cell(uri(neighbor), HIT_BORDER if hit else MISS_BORDER, label))
        lines.append('<div style="white-space:nowrap;overflow-x:auto">' + "".join(cells) + "</div>")
    return "\n".join(lines)


def thumbnails_html(
    items: Sequence[int],
    image_uri: Callable[[int], str] | None,
    class_name: Callable[[int], str],
    *,
    size: int = 56,
) -> str:
    """A wrapped strip of thumbnails, each labelled with its index and class."""
    cells = [
        _cell(
            None if image_uri is None else image_uri(i), "#dddddd", [f"#{i}", class_name(i)], size
        )
        for i in items
    ]
    return '<div style="line-height:0">' + "".join(cells) + "</div>"


def class_colors(count: int) -> list[str]:
    """``count`` colours spread over the Turbo scale, so neighbouring class indices differ."""
    if count <= 1:
        return [sample_colorscale(CLASS_COLORSCALE, [0.5])[0]]
    return sample_colorscale(CLASS_COLORSCALE, [0.05 + 0.9 * i / (count - 1) for i in range(count)])


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
    ``selected`` item a star, its ``neighbors`` ringed. Every trace's ``customdata`` holds
    item indices, so a click or lasso maps back to items whatever trace it hits.

    No drag mode is set: Streamlit then starts in pan mode, where a click selects one point
    (in box/lasso mode clicks only start a drag).
    """
    labels = np.asarray(labels)
    coordinates = np.asarray(coordinates)
    count = len(labels)
    colors = class_colors(len(class_names))
    shown = np.ones(count, bool) if shown_classes is None else np.isin(labels, list(shown_classes))

    def name_of(label: int) -> str:
        return class_names[label] if 0 <= label < len(class_names) else str(label)

    hover = np.array([f"#{i} · {name_of(int(labels[i]))}" for i in range(count)], dtype=object)
    figure = go.Figure()

    def add(rows: np.ndarray, name: str, marker: dict, **extra: object) -> None:
        if rows.size == 0:
            return
        figure.add_trace(
            go.Scattergl(
                x=coordinates[rows, 0],
                y=coordinates[rows, 1],
                mode="markers",
                name=name,
                marker={"size": 6, "opacity": 0.85, **marker},
                text=hover[rows],
                customdata=rows,
                hovertemplate="%{text}<extra></extra>",
                **extra,
            )
        )

    add(np.flatnonzero(~shown), "other classes", {"color": FADED}, hoverinfo="skip")
    visible = np.flatnonzero(shown)
    if color_by == "Recall@1 hit/miss" and hits is not None:
        for name, value, color in (("hit", 1.0, HIT_BORDER), ("miss", 0.0, MISS_BORDER)):
            add(visible[hits[visible] == value], f"Recall@1 {name}", {"color": color})
        add(visible[np.isnan(hits[visible])], "lone query", {"color": LONE_COLOR})
    elif color_by == "AP@R" and average_precision is not None:
        finite = visible[np.isfinite(average_precision[visible])]
        add(
            finite,
            "AP@R",
            {
                "color": average_precision[finite],
                "colorscale": "Viridis",
                "cmin": 0,
                "cmax": 1,
                "colorbar": {"title": {"text": "AP@R"}, "thickness": 12},
            },
            showlegend=False,
        )
        add(visible[~np.isfinite(average_precision[visible])], "lone query", {"color": LONE_COLOR})
    else:
        groups = labels if color_by != "nearest wrong class" or nearest_wrong is None else None
        if groups is None:
            groups = np.array([labels[j] if j >= 0 else -1 for j in nearest_wrong])
        prefix = "nearest wrong: " if color_by == "nearest wrong class" else ""
        for group in np.unique(groups[visible]):
            rows = visible[groups[visible] == group]
            color = colors[int(group) % len(colors)] if group >= 0 else LONE_COLOR
            add(rows, prefix + (name_of(int(group)) if group >= 0 else "none"), {"color": color})
    if neighbors:
        rows = np.asarray(list(neighbors), dtype=np.int64)
        add(
            rows,
            "its neighbours",
            {"size": 13, "color": "rgba(0,0,0,0)", "line": {"width": 2, "color": "#111"}},
        )
    if selected is not None:
        add(
            np.array([selected]),
            f"selected #{selected}",
            {
                "size": 18,
                "symbol": "star",
                "color": "#ffd400",
                "line": {"width": 1.5, "color": "#111"},
            },
        )
    figure.update_layout(
        title=title,
        legend={"itemsizing": "constant", "font": {"size": 11}},
        uirevision="inspect-projection",
    )
    figure.update_xaxes(showticklabels=False)
    figure.update_yaxes(showticklabels=False, scaleanchor="x")
    return _compact(figure, 460)


def per_class_delta_figure(
    rows: Sequence[Mapping[str, object]], measure: str, top: int = 10
) -> go.Figure:
    """Horizontal bars of Δ (B − A) per class: the ``top`` largest gains and losses."""
    chosen = list(rows[:top]) + [row for row in rows[-top:] if row not in rows[:top]]
    chosen = sorted(chosen, key=lambda row: row["Δ (B − A)"])
    deltas = [float(row["Δ (B − A)"]) for row in chosen]
    figure = go.Figure(
        go.Bar(
            x=deltas,
            y=[str(row["class"]) for row in chosen],
            orientation="h",
            marker={"color": [HIT_BORDER if d > 0 else MISS_BORDER for d in deltas]},
            text=[f"{d:+.2f}" for d in deltas],
            hovertemplate="%{y}: Δ %{x:+.3f}<extra></extra>",
        )
    )
    figure.update_xaxes(title=f"Δ {measure} (B − A)", zeroline=True)
    figure.update_yaxes(type="category", automargin=True)
    figure.update_layout(title=f"Δ {measure} per class")
    return _compact(figure, max(300, 22 * len(chosen) + 90))


def confusion_html(
    pairs: Sequence[ConfusedPair],
    image_uri: Callable[[int], str] | None,
    class_name: Callable[[int], str],
) -> str:
    """One line per confused pair: an example query of the first class, the neighbour of the
    second class it retrieved, and how often that happens."""
    lines = []
    for pair in pairs:

        def uri(index: int) -> str | None:
            return None if image_uri is None else image_uri(index)

        query = _cell(
            uri(pair.example_query),
            QUERY_BORDER,
            [f"#{pair.example_query}", class_name(pair.query_class)],
            56,
        )
        neighbor = _cell(
            uri(pair.example_neighbor),
            MISS_BORDER,
            [f"#{pair.example_neighbor}", class_name(pair.retrieved_class)],
            56,
        )
        text = (
            f"<b>{html.escape(class_name(pair.query_class))}</b> → "
            f"<b>{html.escape(class_name(pair.retrieved_class))}</b><br>{pair.count}× "
            f"({100 * pair.share:.1f} % of its top-k)"
        )
        lines.append(
            '<div style="display:flex;align-items:center;gap:8px;margin-bottom:4px">'
            f'{query}<span style="font-size:18px">→</span>{neighbor}'
            f'<div style="font-size:13px">{text}</div></div>'
        )
    return "\n".join(lines)
