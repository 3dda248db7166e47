"""The Toy lab's still figures and their style: the 2-D inputs, the loss curves, the multi-seed
strip. Train classes are drawn in cool colours, the unseen test classes in warm ones
(:mod:`toy.palette`). Pure: numpy arrays and study documents in, figures out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go

from app.figures.animation import PLAYER_CONFIG
from app.figures.labels import NUMBER_FORMAT
from app.toy_text import METRIC_LABELS, clipped_interval
from toy.palette import MODE_COLOURS, TEST_COLOURS, TRAIN_COLOURS

PLOT_CONFIG = PLAYER_CONFIG
"""Streamlit ``config`` of every toy plot: no toolbar over the titles (3-D still rotates by drag)."""
SPLITS = (("train", TRAIN_COLOURS), ("test", TEST_COLOURS))
DATA_TITLE = "inputs: train classes on y = x,<br>unseen test classes on x = 0.2 and y = 0.2"


@dataclass(frozen=True)
class ToyStyle:
    """Sizes in px: ``font`` for text, ``tick`` for tick labels; the plots' heights."""

    font: int
    tick: int
    marker: int
    embedding_height: int
    spectrum_height: int
    loss_height: int
    study_height: int
    data_height: int


NORMAL_STYLE = ToyStyle(14, 13, 8, 340, 160, 260, 380, 340)
PRESENTATION_STYLE = ToyStyle(19, 17, 11, 440, 180, 300, 440, 380)


def toy_style(presentation: bool) -> ToyStyle:
    return PRESENTATION_STYLE if presentation else NORMAL_STYLE


def apply_fonts(figure: go.Figure, style: ToyStyle) -> None:
    """The style's text and tick sizes on every axis of ``figure``."""
    figure.update_layout(font={"size": style.font}, title_font={"size": style.font + 2})
    figure.update_xaxes(tickfont={"size": style.tick}, title_font={"size": style.tick})
    figure.update_yaxes(tickfont={"size": style.tick}, title_font={"size": style.tick})


def class_traces(
    points: np.ndarray, labels: np.ndarray, split: str, style: ToyStyle, *, legend: bool
) -> list[go.Scatter | go.Scatter3d]:
    """One trace per class of ``split``, in that split's colour family; 2-D or 3-D points
    (train filled circles, test hollow diamonds)."""
    colours = dict(SPLITS)[split]
    traces: list[go.Scatter | go.Scatter3d] = []
    for label, colour in enumerate(colours):
        chosen = points[labels == label]
        common = {
            "mode": "markers",
            "name": f"{split} {label}",
            "legendgroup": split,
            "showlegend": legend,
            "hovertemplate": f"{split} class {label}<extra></extra>",
        }
        if points.shape[1] == 3:
            symbol = "circle" if split == "train" else "diamond"
            marker = {"color": colour, "size": style.marker // 2 + 1, "symbol": symbol}
            xyz = {"x": chosen[:, 0], "y": chosen[:, 1], "z": chosen[:, 2]}
            traces.append(go.Scatter3d(**xyz, marker=marker, **common))
        else:
            marker = {
                "color": colour,
                "size": style.marker,
                "symbol": "circle" if split == "train" else "diamond-open",
                "line": {"width": 2 if split == "test" else 0, "color": colour},
            }
            traces.append(go.Scatter(x=chosen[:, 0], y=chosen[:, 1], marker=marker, **common))
    return traces


def data_figure(data: Mapping[str, np.ndarray], style: ToyStyle = NORMAL_STYLE) -> go.Figure:
    """The raw 2-D inputs in one panel: train classes (cool colours, filled) on the diagonal,
    test classes (warm colours, hollow) on the lines x = 0.2 and y = 0.2."""
    figure = go.Figure()
    for split, _ in SPLITS:
        points, labels = np.asarray(data[f"{split}_points"]), np.asarray(data[f"{split}_labels"])
        figure.add_traces(class_traces(points, labels, split, style, legend=True))
    figure.update_xaxes(range=[0, 1.1], dtick=0.2, title="x", constrain="domain")
    figure.update_yaxes(range=[0, 1.1], dtick=0.2, title="y", scaleanchor="x")
    title_lines = DATA_TITLE.count("<br>") + 1
    figure.update_layout(
        title={"text": DATA_TITLE, "x": 0, "xanchor": "left"},
        height=style.data_height,
        margin={"l": 50, "r": 10, "t": 20 + title_lines * (style.font + 8), "b": 40},
        legend={"traceorder": "normal", "title": {"text": "classes"}},
    )
    apply_fonts(figure, style)
    return figure


def loss_figure(losses: Mapping[str, np.ndarray], style: ToyStyle = NORMAL_STYLE) -> go.Figure:
    """Each mode's loss per iteration (plain decimal ticks, never SI prefixes)."""
    figure = go.Figure()
    for mode, values in losses.items():
        values = np.asarray(values, dtype=np.float64)
        figure.add_trace(
            go.Scatter(
                x=np.arange(1, values.size + 1),
                y=values,
                mode="lines",
                name=mode,
                line={"color": MODE_COLOURS[mode], "width": 1.5},
            )
        )
    figure.update_xaxes(title="iteration", tickformat="d")
    figure.update_yaxes(title="loss", tickformat=NUMBER_FORMAT, rangemode="tozero")
    figure.update_layout(
        title="loss per iteration",
        height=style.loss_height,
        margin={"l": 60, "r": 10, "t": 70, "b": 50},
        legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"},
    )
    apply_fonts(figure, style)
    return figure


def _mean_trace(
    position: int, mode: str, metric: str, summary: Mapping, style: ToyStyle
) -> go.Scatter:
    """The mean (◆) with its 95 % interval, clipped to where ``metric`` can lie."""
    mean, interval = summary["mean"], summary.get("ci95")
    error = None
    if interval is not None:
        low, high = clipped_interval(metric, *interval)
        error = {
            "type": "data",
            "symmetric": False,
            "array": [max(0.0, high - mean)],
            "arrayminus": [max(0.0, mean - low)],
            "thickness": 2,
            "width": 8,
        }
    return go.Scatter(
        x=[position + 0.3],
        y=[mean],
        mode="markers",
        name=f"{mode}: mean",
        marker={"color": "black", "symbol": "diamond", "size": style.marker + 4},
        error_y=error,
        hovertemplate=f"{mode} mean: %{{y:.3f}}<extra></extra>",
        showlegend=False,
    )


def study_figure(
    study: Mapping[str, Any], metric: str, style: ToyStyle = NORMAL_STYLE
) -> go.Figure:
    """One dot per seed for each mode (a fixed random sideways jitter keeps equal values apart),
    beside it the mean with its 95 % interval (◆) from the study's summary."""
    figure = go.Figure()
    modes = list(study["modes"])
    for position, mode in enumerate(modes):
        entry = study["modes"][mode]
        seeds = [record["seed"] for record in entry["per_seed"]]
        values = [record[metric] for record in entry["per_seed"]]
        offsets = np.random.default_rng(position).uniform(-0.22, 0.12, len(values))
        colour = MODE_COLOURS.get(mode, "#444")
        figure.add_trace(
            go.Scatter(
                x=position + offsets,
                y=values,
                mode="markers",
                name=f"{mode}: seeds",
                marker={"color": colour, "size": style.marker, "opacity": 0.6},
                text=[f"seed {seed}" for seed in seeds],
                hovertemplate=f"{mode}, %{{text}}: %{{y:.3f}}<extra></extra>",
                showlegend=False,
            )
        )
        figure.add_trace(_mean_trace(position, mode, metric, entry["summary"][metric], style))
    label = METRIC_LABELS.get(metric, metric)
    figure.update_xaxes(
        tickvals=list(range(len(modes))), ticktext=modes, range=[-0.6, len(modes) - 0.4]
    )
    figure.update_yaxes(title=label, tickformat=NUMBER_FORMAT)
    figure.update_layout(
        title=f"{label}: one dot per seed, ◆ mean and 95 % interval ({len(study['seeds'])} seeds)",
        height=style.study_height,
        margin={"l": 60, "r": 10, "t": 60, "b": 40},
    )
    apply_fonts(figure, style)
    return figure
