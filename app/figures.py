"""Pure figure builders: numpy in, plotly figures (or an HTML string) out. Tests call them directly."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.analysis import RetrievalRow
from app.settings import CURVE_METRICS, UNIT_INTERVAL_METRICS

QUERY_BORDER, HIT_BORDER, MISS_BORDER = "#1f77b4", "#2ca02c", "#d62728"
CURVE_PANELS = (("loss", "loss"), *CURVE_METRICS)
CURVE_PANELS_PER_ROW = 3
RUN_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
CLASS_COLORSCALE = "Turbo"


def _compact(figure: go.Figure, height: int = 360) -> go.Figure:
    figure.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure


def spectrum_figure(
    spectra: Mapping[str, np.ndarray], *, log_scale: bool = False, title: str = ""
) -> go.Figure:
    """Normalised singular values s̃_i = s_i / Σs (docs/DESIGN.md §3) against their rank, one line each."""
    figure = go.Figure()
    for name, spectrum in spectra.items():
        values = np.asarray(spectrum, dtype=np.float64)
        figure.add_trace(
            go.Scatter(x=np.arange(1, values.size + 1), y=values, mode="lines+markers", name=name)
        )
    figure.update_xaxes(title="rank i")
    figure.update_yaxes(title="s̃_i", type="log" if log_scale else "linear")
    figure.update_layout(title=title or ("spectrum (log)" if log_scale else "spectrum"))
    return _compact(figure)


def spectrum_bars(spectrum: np.ndarray, title: str = "singular values") -> go.Figure:
    """Bars of the normalised singular values (the toy's 2 or 3 of them)."""
    values = np.asarray(spectrum, dtype=np.float64)
    labels = [f"s̃{i}" for i in range(1, values.size + 1)]
    figure = go.Figure(go.Bar(x=labels, y=values, text=[f"{v:.3f}" for v in values]))
    figure.update_yaxes(range=[0, 1], title="share of Σs")
    figure.update_layout(title=title)
    return _compact(figure, 300)


def projection_figure(
    coordinates: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str] | None = None,
    *,
    title: str = "",
    hover: Sequence[str] | None = None,
) -> go.Figure:
    """2-D projection coloured by class; one trace, so a selection's point indices are item rows."""
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
    figure.update_layout(title=title, dragmode="lasso")
    figure.update_xaxes(showticklabels=False)
    figure.update_yaxes(showticklabels=False, scaleanchor="x")
    return _compact(figure, 420)


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
    """A checkpoint's stored metric history: one line per metric key against the epoch."""
    figure = go.Figure()
    epochs = [entry.get("epoch") for entry in history]
    for key in keys:
        figure.add_trace(go.Scatter(x=epochs, y=[e.get(key) for e in history], name=key))
    figure.update_xaxes(title="epoch")
    figure.update_layout(title="stored metric history")
    return _compact(figure, 300)


def toy_embedding_figure(
    train_points: np.ndarray,
    train_labels: np.ndarray,
    test_points: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    *,
    title: str = "embedding",
) -> go.Figure:
    """Unit-norm embeddings on the circle (2-D) or the sphere (3-D); train filled, test hollow."""
    three_d = train_points.shape[1] == 3
    figure = go.Figure()
    parts = [("train", train_points, train_labels, "circle")]
    if test_points is not None and test_labels is not None:
        parts.append(("test", test_points, test_labels, "circle-open" if not three_d else "x"))
    for name, points, labels, symbol in parts:
        marker = {"color": labels, "colorscale": CLASS_COLORSCALE, "symbol": symbol, "size": 7}
        if three_d:
            trace = go.Scatter3d(
                x=points[:, 0],
                y=points[:, 1],
                z=points[:, 2],
                mode="markers",
                name=name,
                marker={**marker, "size": 3},
            )
        else:
            trace = go.Scatter(
                x=points[:, 0], y=points[:, 1], mode="markers", name=name, marker=marker
            )
        figure.add_trace(trace)
    if not three_d:
        angle = np.linspace(0, 2 * np.pi, 181)
        figure.add_trace(
            go.Scatter(
                x=np.cos(angle),
                y=np.sin(angle),
                mode="lines",
                line={"color": "#bbb", "width": 1},
                hoverinfo="skip",
                showlegend=False,
            )
        )
        figure.update_xaxes(range=[-1.15, 1.15])
        figure.update_yaxes(range=[-1.15, 1.15], scaleanchor="x")
    figure.update_layout(title=title)
    return _compact(figure, 380)


def loss_figure(steps: Sequence[int], losses: Sequence[float]) -> go.Figure:
    figure = go.Figure(go.Scatter(x=list(steps), y=list(losses), mode="lines", name="loss"))
    figure.update_xaxes(title="iteration")
    figure.update_layout(title="loss")
    return _compact(figure, 300)


def toy_data_figure(data: Mapping[str, np.ndarray]) -> go.Figure:
    """The toy's input data: train and test points (x, y) coloured by class, side by side."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=["train classes", "test classes"])
    for column, split in enumerate(("train", "test"), start=1):
        points = np.asarray(data[f"{split}_points"])
        labels = np.asarray(data[f"{split}_labels"])
        figure.add_trace(
            go.Scatter(
                x=points[:, 0],
                y=points[:, 1],
                mode="markers",
                name=split,
                marker={"color": labels, "colorscale": CLASS_COLORSCALE, "size": 5},
            ),
            row=1,
            col=column,
        )
    figure.update_layout(showlegend=False)
    return _compact(figure, 300)


def study_figure(summaries: Mapping[str, Mapping[str, object]], metric: str) -> go.Figure:
    """Mean and 95 % interval of ``metric`` per toy mode.

    ``summaries[mode] = {"mean": m, "ci95": [low, high] or None}`` (one seed: no interval).
    """
    modes = list(summaries)
    means = [float(summaries[mode]["mean"]) for mode in modes]
    intervals = [
        summaries[mode].get("ci95") or [mean, mean] for mode, mean in zip(modes, means, strict=True)
    ]
    figure = go.Figure(
        go.Bar(
            x=modes,
            y=means,
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [high - mean for (_, high), mean in zip(intervals, means, strict=True)],
                "arrayminus": [mean - low for (low, _), mean in zip(intervals, means, strict=True)],
                "visible": True,
            },
        )
    )
    figure.update_layout(title=f"{metric}: mean and 95 % interval over seeds")
    return _compact(figure, 320)


def retrieval_grid_html(
    rows: Sequence[RetrievalRow],
    image_uri: Callable[[int], str],
    class_name: Callable[[int], str] = str,
    caption: Callable[[RetrievalRow], str] | None = None,
) -> str:
    """Query (blue border) then its neighbours (green: same class, red: other), distance below."""

    def cell(uri: str, color: str, text: str) -> str:
        return (
            '<figure style="margin:0 6px 6px 0;display:inline-block;text-align:center">'
            f'<img src="{uri}" width="72" height="72" style="border:4px solid {color};'
            f'image-rendering:pixelated"/><figcaption style="font-size:11px">{html.escape(text)}'
            "</figcaption></figure>"
        )

    lines = []
    for row in rows:
        title = caption(row) if caption else f"query #{row.query}"
        cells = [
            cell(image_uri(row.query), QUERY_BORDER, f"{title} · {class_name(row.query_label)}")
        ]
        for neighbor, distance, hit in zip(row.neighbors, row.distances, row.hits, strict=True):
            cells.append(
                cell(image_uri(neighbor), HIT_BORDER if hit else MISS_BORDER, f"d={distance:.3f}")
            )
        lines.append('<div style="white-space:nowrap;overflow-x:auto">' + "".join(cells) + "</div>")
    return "\n".join(lines)
