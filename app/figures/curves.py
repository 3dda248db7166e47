"""Metrics over training: several runs' curves overlaid, and a checkpoint's stored history.

Recall and MAP@R axes span [0, 1]; the others start at 0 when their values are positive; x ticks
are whole epochs (steps for the loss)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures.labels import integer_ticks
from app.figures.palette import run_color
from app.settings import CURVE_METRICS, UNIT_INTERVAL_METRICS

CURVE_PANELS = (("loss", "loss"), *CURVE_METRICS)
"""``(series key, panel title)`` of :func:`curves_figure`, in panel order."""
CURVE_PANELS_PER_ROW = 3
Series = tuple[list[float], list[float]]
Curves = Mapping[str, Mapping[str, Series | None]]


def _value_axis(figure: go.Figure, key: str, values: Sequence, **cell: int) -> None:
    """[0, 1] for a unit-interval metric, from 0 for other non-negative values."""
    if key in UNIT_INTERVAL_METRICS:
        figure.update_yaxes(range=[0, 1.02], **cell)
    elif values and all(v is not None and v >= 0 for v in values):
        figure.update_yaxes(rangemode="tozero", **cell)


def _undefined_note(figure: go.Figure, curves: Curves, key: str, panel: int) -> None:
    """ "n/a" in the middle of ``panel`` when a run's series is None (ρ@k of a ≤ k-dimensional
    embedding), naming the runs when only some lack it."""
    undefined = [run for run, series in curves.items() if key in series and series[key] is None]
    if not undefined:
        return
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


def curves_figure(curves: Curves) -> go.Figure:
    """Training curves of several runs overlaid: ``curves[run][series] = (x, y)``, one panel per
    :data:`CURVE_PANELS` entry, three panels a row, the legend on top. A series that is None is
    undefined for that run: the panel says "n/a" instead of plotting it."""
    columns = CURVE_PANELS_PER_ROW
    rows = -(-len(CURVE_PANELS) // columns)
    figure = make_subplots(
        rows=rows,
        cols=columns,
        subplot_titles=[t for _, t in CURVE_PANELS],
        vertical_spacing=0.22,
        horizontal_spacing=0.08,
    )
    cells = [{"row": i // columns + 1, "col": i % columns + 1} for i in range(len(CURVE_PANELS))]
    for run_index, (run, series) in enumerate(curves.items()):
        for panel, ((key, _), cell) in enumerate(zip(CURVE_PANELS, cells, strict=True)):
            values = series.get(key, ([], []))
            if values is None:
                continue
            line = go.Scatter(
                x=values[0],
                y=values[1],
                mode="lines+markers" if key != "loss" else "lines",
                name=run,
                legendgroup=run,
                showlegend=panel == 0,
                line={"color": run_color(run_index)},
            )
            figure.add_trace(line, **cell)
    for panel, ((key, _), cell) in enumerate(zip(CURVE_PANELS, cells, strict=True)):
        xs = [x for series in curves.values() for x in (series.get(key) or ([], []))[0]]
        ys = [y for series in curves.values() for y in (series.get(key) or ([], []))[1]]
        ticks = integer_ticks(xs, max_ticks=5)
        figure.update_xaxes(title="step" if key == "loss" else "epoch", **ticks, **cell)
        _value_axis(figure, key, ys, **cell)
        _undefined_note(figure, curves, key, panel)
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
    numeric = [e for e in epochs if e is not None]
    for column, key in enumerate(keys, start=1):
        values = [entry.get(key) for entry in history]
        line = go.Scatter(
            x=epochs,
            y=values,
            name=titles.get(key, key),
            mode="lines+markers",
            line={"color": run_color(column - 1)},
            showlegend=False,
        )
        figure.add_trace(line, row=1, col=column)
        ticks = integer_ticks(numeric, max_ticks=4)
        figure.update_xaxes(title="epoch", **ticks, row=1, col=column)
        _value_axis(figure, key, values, row=1, col=column)
    figure.update_layout(height=250, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure
