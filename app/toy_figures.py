"""Plotly figures of the Toy lab: the inputs, a replay of recorded runs side by side, the loss
curves and the multi-seed strip. Pure: numpy arrays and toy frames in, figures out.

The replay holds every recorded frame (plotly ``frames``) with a step slider and play/pause/speed
buttons, so the browser replays and scrubs it with no round trip to the server. Train classes
are drawn in cool colours, the unseen test classes in warm ones (:mod:`toy.palette`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from toy.api import ToyFrame
from toy.palette import MODE_COLOURS, TEST_COLOURS, TRAIN_COLOURS

PLOT_CONFIG = {"displayModeBar": False}
"""Streamlit ``config`` of every toy plot: no toolbar over the titles (3-D still rotates by drag)."""
REPLAY_SPEEDS = {"¼×": 0.25, "½×": 0.5, "1×": 1.0, "2×": 2.0}
"""Play buttons: label → speed (frames at ``FRAME_MILLISECONDS / speed`` each)."""
REPLAY_CONTROLS_HEIGHT = 70
"""Height in px of the row of replay buttons and step slider above the embeddings."""
FRAME_MILLISECONDS = 200
"""Time a frame stays on screen at 1× (41 frames: about 8 s)."""
AXIS_LIMIT = 1.12
"""Embedding axes span ±AXIS_LIMIT: the unit circle/sphere and its markers fit with room."""
METRIC_LABELS = {
    "test_recall@1": "test Recall@1",
    "train_recall@1": "train Recall@1",
    "rho@1": "ρ@1",
    "pi_ratio": "π_ratio",
}
NUMBER_FORMAT = ".3~g"
"""d3 tick format: plain decimals (0.002, not 2m or 2µ)."""
SPLITS = (("train", TRAIN_COLOURS), ("test", TEST_COLOURS))
LEGEND_TITLE = "classes (train: seen in training · test: unseen)  "


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


def _fonts(figure: go.Figure, style: ToyStyle) -> None:
    figure.update_layout(font={"size": style.font}, title_font={"size": style.font + 2})
    figure.update_xaxes(tickfont={"size": style.tick}, title_font={"size": style.tick})
    figure.update_yaxes(tickfont={"size": style.tick}, title_font={"size": style.tick})


def _class_traces(
    points: np.ndarray, labels: np.ndarray, split: str, style: ToyStyle, *, legend: bool
) -> list[go.Scatter | go.Scatter3d]:
    """One trace per class of ``split``, in that split's colour family; 2-D or 3-D points."""
    colours = dict(SPLITS)[split]
    traces = []
    for label in range(len(colours)):
        chosen = points[labels == label]
        common = {
            "mode": "markers",
            "name": f"{split} {label}",
            "legendgroup": split,
            "showlegend": legend,
            "hovertemplate": f"{split} class {label}<extra></extra>",
        }
        if points.shape[1] == 3:
            marker = {
                "color": colours[label],
                "size": style.marker // 2 + 1,
                "symbol": "circle" if split == "train" else "diamond",
            }
            traces.append(
                go.Scatter3d(
                    x=chosen[:, 0], y=chosen[:, 1], z=chosen[:, 2], marker=marker, **common
                )
            )
        else:
            marker = {
                "color": colours[label],
                "size": style.marker,
                "symbol": "circle" if split == "train" else "diamond-open",
                "line": {"width": 2 if split == "test" else 0, "color": colours[label]},
            }
            traces.append(go.Scatter(x=chosen[:, 0], y=chosen[:, 1], marker=marker, **common))
    return traces


def data_figure(data: Mapping[str, np.ndarray], style: ToyStyle = NORMAL_STYLE) -> go.Figure:
    """The raw 2-D inputs in one panel: train classes (cool colours, filled) on the diagonal,
    test classes (warm colours, hollow) on the lines x = 0.2 and y = 0.2."""
    figure = go.Figure()
    for split, _ in SPLITS:
        points, labels = np.asarray(data[f"{split}_points"]), np.asarray(data[f"{split}_labels"])
        figure.add_traces(_class_traces(points, labels, split, style, legend=True))
    figure.update_xaxes(range=[0, 1.1], dtick=0.2, title="x", constrain="domain")
    figure.update_yaxes(range=[0, 1.1], dtick=0.2, title="y", scaleanchor="x")
    figure.update_layout(
        title="inputs: train classes on y = x, unseen test classes on x = 0.2 and y = 0.2",
        height=style.data_height,
        margin={"l": 50, "r": 10, "t": 50, "b": 40},
        legend={"traceorder": "normal", "title": {"text": "classes"}},
    )
    _fonts(figure, style)
    return figure


def _mode_caption(mode: str, frame: ToyFrame) -> str:
    """Two short lines above a mode's embedding: its name and step, then test R@1 and ρ@1."""
    metrics = frame.metrics
    return (
        f"<b>{mode}</b> · step {frame.step}<br>"
        f"test R@1 {metrics['test_recall@1']:.2f} · ρ@1 {metrics['rho@1']:.2f}"
    )


def replay_figure(
    runs: Mapping[str, Sequence[ToyFrame]],
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    style: ToyStyle = NORMAL_STYLE,
    *,
    animate: bool = True,
) -> go.Figure:
    """Recorded runs side by side: one embedding per mode (unit circle, or a translucent unit
    sphere in 3-D) above the modes' normalised singular values s̃_i = s_i / Σs of the train
    embedding (docs/DESIGN.md §3), the dashed line at 1/d marking a flat spectrum.

    ``runs[mode]`` is that mode's frames, all at the same steps. It shows the last frame; with
    ``animate``, every frame is a plotly frame behind a step slider and ▶ ¼× ½× 1× 2× / ❚❚
    buttons. Trace order: one spectrum bar trace per mode, then per mode its class traces, then
    the circles or spheres (never animated).
    """
    modes = list(runs)
    if not modes:
        raise ValueError("replay_figure needs at least one run")
    steps = [frame.step for frame in runs[modes[0]]]
    if any([frame.step for frame in runs[mode]] != steps for mode in modes):
        raise ValueError("replay_figure needs runs recorded at the same steps")
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    dims = runs[modes[0]][-1].train_embeddings.shape[1]
    three_d = dims == 3
    count = len(modes)
    caption_height = round(2.6 * style.font) + 10
    controls_height = REPLAY_CONTROLS_HEIGHT if animate else 0
    gap, top, bottom = 80, 40 + controls_height + caption_height, 120
    plot_height = style.embedding_height + gap + style.spectrum_height
    figure = make_subplots(
        rows=2,
        cols=count,
        specs=[
            [{"type": "scene" if three_d else "xy"}] * count,
            [{"type": "xy", "colspan": count}] + [None] * (count - 1),
        ],
        row_heights=[style.embedding_height, style.spectrum_height],
        vertical_spacing=gap / plot_height,
        horizontal_spacing=0.03 if three_d else 0.06,
    )

    spectrum_axis = "" if three_d else str(count + 1)

    def moving_traces(index: int) -> list[Any]:
        traces: list[Any] = []
        for mode in modes:
            spectrum = runs[mode][index].spectrum
            traces.append(
                go.Bar(
                    x=[[mode] * dims, [f"s̃{i}" for i in range(1, dims + 1)]],
                    y=spectrum,
                    text=[f"{value:.2f}" for value in spectrum],
                    textposition="outside",
                    marker_color=MODE_COLOURS[mode],
                    name=mode,
                    showlegend=False,
                    hovertemplate=f"{mode} %{{x}}: %{{y:.3f}}<extra></extra>",
                )
            )
        for position, mode in enumerate(modes):
            frame = runs[mode][index]
            for split, points, labels in (
                ("train", frame.train_embeddings, train_labels),
                ("test", frame.test_embeddings, test_labels),
            ):
                traces += _class_traces(points, labels, split, style, legend=position == 0)
        return traces

    last = len(steps) - 1
    for trace in moving_traces(last)[:count]:
        figure.add_trace(trace, row=2, col=1)
    class_traces = moving_traces(last)[count:]
    per_mode = len(class_traces) // count
    for position in range(count):
        for trace in class_traces[position * per_mode : (position + 1) * per_mode]:
            figure.add_trace(trace, row=1, col=position + 1)
    for position in range(count):
        figure.add_trace(_unit_shape(three_d), row=1, col=position + 1)

    def annotations(index: int) -> list[dict[str, Any]]:
        notes = []
        for position, mode in enumerate(modes):
            axis = "scene" if three_d else "xaxis"
            suffix = "" if position == 0 else str(position + 1)
            x_domain = figure.layout[f"{axis}{suffix}"].domain
            if three_d:
                x_domain = x_domain.x
            notes.append(
                {
                    "text": _mode_caption(mode, runs[mode][index]),
                    "x": sum(x_domain) / 2,
                    "y": 1.0,
                    "xref": "paper",
                    "yref": "paper",
                    "xanchor": "center",
                    "yanchor": "bottom",
                    "showarrow": False,
                    "font": {"size": style.font},
                }
            )
        spectrum_top = figure.layout[f"yaxis{spectrum_axis}"].domain[1]
        notes.append(
            {
                "text": "singular values of the train embedding, normalised (share of Σs)",
                "x": 0,
                "y": spectrum_top + 12 / plot_height,
                "xref": "paper",
                "yref": "paper",
                "xanchor": "left",
                "yanchor": "bottom",
                "showarrow": False,
                "font": {"size": style.font},
            }
        )
        return notes

    def title(index: int) -> str:
        return f"embedding at step {steps[index]} of {steps[-1]}"

    spectrum_row = {"row": 2, "col": 1}
    figure.add_shape(
        type="line",
        xref=f"x{spectrum_axis} domain",
        x0=0,
        x1=1,
        yref=f"y{spectrum_axis}",
        y0=1 / dims,
        y1=1 / dims,
        line={"dash": "dash", "color": "#888", "width": 1},
    )
    figure.update_yaxes(range=[0, 1.18], dtick=0.25, tickformat=NUMBER_FORMAT, **spectrum_row)
    if three_d:
        # No tick labels: at the cube's corners those of two axes overlap, and the unit sphere
        # already gives the scale. The camera stands far enough back to keep the whole cube.
        axis = {
            "range": [-AXIS_LIMIT, AXIS_LIMIT],
            "dtick": 1,
            "title": "",
            "showticklabels": False,
        }
        figure.update_scenes(
            xaxis=axis,
            yaxis=axis,
            zaxis=axis,
            aspectmode="cube",
            camera={"eye": {"x": 1.6, "y": 1.6, "z": 1.05}},
            uirevision="toy",
        )
    else:
        for position in range(count):
            suffix = "" if position == 0 else str(position + 1)
            figure.update_xaxes(
                range=[-AXIS_LIMIT, AXIS_LIMIT], dtick=1, constrain="domain",
                row=1, col=position + 1,
            )  # fmt: skip
            figure.update_yaxes(
                range=[-AXIS_LIMIT, AXIS_LIMIT], dtick=1, constrain="domain",
                constraintoward="top", scaleanchor=f"x{suffix}", row=1, col=position + 1,
            )  # fmt: skip
    figure.update_layout(
        title={"text": title(last), "x": 0, "xanchor": "left", "y": 0.995, "yanchor": "top"},
        annotations=annotations(last),
        height=top + plot_height + bottom,
        margin={"l": 50, "r": 20, "t": top, "b": bottom},
        legend={
            "orientation": "h",
            "traceorder": "normal",
            "title": {"text": LEGEND_TITLE, "side": "top left"},
            "x": 0,
            "y": -55 / plot_height,
            "yanchor": "top",
        },
        uirevision="toy",
    )
    _fonts(figure, style)
    if animate:

        def frame_data(index: int) -> list[dict[str, Any]]:
            return _frame_data(runs, index, train_labels, test_labels)

        controls_top = 1 + (caption_height + controls_height) / plot_height
        _add_replay(figure, steps, frame_data, annotations, title, controls_top, style)
    return figure


def _unit_shape(three_d: bool) -> go.Scatter | go.Surface:
    """The unit circle, or the unit sphere as a translucent surface."""
    if three_d:
        azimuth, polar = np.mgrid[0 : 2 * np.pi : 41j, 0 : np.pi : 21j]
        return go.Surface(
            x=np.cos(azimuth) * np.sin(polar),
            y=np.sin(azimuth) * np.sin(polar),
            z=np.cos(polar),
            opacity=0.15,
            colorscale=[[0, "#9a9a9a"], [1, "#9a9a9a"]],
            showscale=False,
            hoverinfo="skip",
            name="unit sphere",
        )
    angle = np.linspace(0, 2 * np.pi, 181)
    return go.Scatter(
        x=np.cos(angle),
        y=np.sin(angle),
        mode="lines",
        line={"color": "#bbb", "width": 1},
        hoverinfo="skip",
        showlegend=False,
        name="unit circle",
    )


def _frame_data(
    runs: Mapping[str, Sequence[ToyFrame]],
    index: int,
    train_labels: np.ndarray,
    test_labels: np.ndarray,
) -> list[dict[str, Any]]:
    """What changes between frames, in the order of the moving traces: each mode's spectrum
    (bars), then per mode the coordinates of each class of each split."""
    data: list[dict[str, Any]] = []
    for frames in runs.values():
        spectrum = frames[index].spectrum
        data.append({"type": "bar", "y": spectrum, "text": [f"{v:.2f}" for v in spectrum]})
    for frames in runs.values():
        frame = frames[index]
        for points, labels in (
            (frame.train_embeddings, train_labels),
            (frame.test_embeddings, test_labels),
        ):
            for label in range(len(TRAIN_COLOURS)):
                chosen = points[labels == label]
                coordinates = dict(zip("xyz", chosen.T, strict=False))
                data.append(
                    {"type": "scatter3d" if points.shape[1] == 3 else "scatter", **coordinates}
                )
    return data


def _add_replay(figure, steps, frame_data, annotations, title, controls_top, style) -> None:
    """Frames for every recorded step; the play (per speed) / pause buttons and the step slider
    in one row at ``controls_top`` (paper coordinates), above the embeddings so they stay in view
    on a small screen."""
    moving = list(range(len(frame_data(0))))
    figure.frames = [
        go.Frame(
            name=str(step),
            data=frame_data(index),
            traces=moving,
            layout={"annotations": annotations(index), "title": {"text": title(index)}},
        )
        for index, step in enumerate(steps)
    ]
    still = {
        "mode": "immediate",
        "frame": {"duration": 0, "redraw": True},
        "transition": {"duration": 0},
    }

    def play(label: str, speed: float) -> dict[str, Any]:
        duration = round(FRAME_MILLISECONDS / speed)
        return {
            "label": f"▶ {label}",
            "method": "animate",
            "args": [
                None,
                {
                    "mode": "immediate",
                    "fromcurrent": True,
                    "frame": {"duration": duration, "redraw": True},
                    "transition": {"duration": 0},
                },
            ],
        }

    label_every = max(1, -(-len(steps) // 10))
    figure.update_layout(
        updatemenus=[
            {
                "type": "buttons",
                "direction": "left",
                "showactive": False,
                "x": 0,
                "xanchor": "left",
                "y": controls_top,
                "yanchor": "top",
                "pad": {"t": 4, "r": 4},
                "font": {"size": style.tick},
                "buttons": [
                    *(play(label, speed) for label, speed in REPLAY_SPEEDS.items()),
                    {"label": "❚❚", "method": "animate", "args": [[None], still]},
                ],
            }
        ],
        sliders=[
            {
                "active": len(steps) - 1,
                "x": 0.45,
                "len": 0.55,
                "y": controls_top,
                "yanchor": "top",
                "pad": {"t": 6},
                "currentvalue": {"visible": False},
                "font": {"size": style.tick - 2},
                "steps": [
                    {
                        "method": "animate",
                        "label": str(step) if index % label_every == 0 else "",
                        "args": [[str(step)], still],
                    }
                    for index, step in enumerate(steps)
                ],
            }
        ],
    )


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
    _fonts(figure, style)
    return figure


def study_figure(
    study: Mapping[str, Any], metric: str, style: ToyStyle = NORMAL_STYLE
) -> go.Figure:
    """One dot per seed for each mode (a fixed random sideways jitter keeps equal values apart), beside it
    the mean with its 95 % interval (◆) from the study's summary."""
    figure = go.Figure()
    modes = list(study["modes"])
    for position, mode in enumerate(modes):
        entry = study["modes"][mode]
        seeds = [record["seed"] for record in entry["per_seed"]]
        values = [record[metric] for record in entry["per_seed"]]
        offsets = np.random.default_rng(position).uniform(-0.22, 0.12, len(values))
        figure.add_trace(
            go.Scatter(
                x=position + offsets,
                y=values,
                mode="markers",
                name=f"{mode}: seeds",
                marker={
                    "color": MODE_COLOURS.get(mode, "#444"),
                    "size": style.marker,
                    "opacity": 0.6,
                },
                text=[f"seed {seed}" for seed in seeds],
                hovertemplate=f"{mode}, %{{text}}: %{{y:.3f}}<extra></extra>",
                showlegend=False,
            )
        )
        summary = entry["summary"][metric]
        mean, interval = summary["mean"], summary.get("ci95")
        error = None
        if interval is not None:
            error = {
                "type": "data",
                "symmetric": False,
                "array": [interval[1] - mean],
                "arrayminus": [mean - interval[0]],
                "thickness": 2,
                "width": 8,
            }
        figure.add_trace(
            go.Scatter(
                x=[position + 0.3],
                y=[mean],
                mode="markers",
                name=f"{mode}: mean",
                marker={"color": "black", "symbol": "diamond", "size": style.marker + 4},
                error_y=error,
                hovertemplate=f"{mode} mean: %{{y:.3f}}<extra></extra>",
                showlegend=False,
            )
        )
    figure.update_xaxes(
        tickvals=list(range(len(modes))), ticktext=modes, range=[-0.6, len(modes) - 0.4]
    )
    figure.update_yaxes(title=METRIC_LABELS.get(metric, metric), tickformat=NUMBER_FORMAT)
    figure.update_layout(
        title=(
            f"{METRIC_LABELS.get(metric, metric)}: one dot per seed, ◆ mean and 95 % interval "
            f"({len(study['seeds'])} seeds)"
        ),
        height=style.study_height,
        margin={"l": 60, "r": 10, "t": 60, "b": 40},
    )
    _fonts(figure, style)
    return figure
