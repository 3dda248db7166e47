"""The Toy lab's replay: recorded runs side by side, one embedding per mode (unit circle, or a
translucent unit sphere in 3-D) above the modes' normalised singular values s̃_i = s_i / Σs of
the train embedding (docs/DESIGN.md §3), the dashed line at 1/d marking a flat spectrum. Every
recorded frame is a frame of the app's one player (:mod:`app.figures.animation`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures.animation import CONTROLS_HEIGHT, PlayerFrame, add_player
from app.figures.labels import NUMBER_FORMAT
from app.figures.toy import NORMAL_STYLE, SPLITS, ToyStyle, apply_fonts, class_traces
from toy.api import ToyFrame
from toy.palette import MODE_COLOURS

FRAME_MILLISECONDS = 200
"""Time a frame stays on screen at 1× (41 frames: about 8 s)."""
AXIS_LIMIT = 1.12
"""Embedding axes span ±AXIS_LIMIT: the unit circle/sphere and its markers fit with room."""
LEGEND_TITLE = "classes (train: seen in training · test: unseen)  "
SPECTRUM_TITLE = "singular values of the train embedding, normalised (share of Σs)"
Runs = Mapping[str, Sequence[ToyFrame]]


@dataclass(frozen=True)
class Geometry:
    """Vertical layout in px: caption and controls above the plots, the gap between the
    embeddings and the spectrum, the legend below."""

    caption: int
    controls: int
    gap: int = 80
    bottom: int = 120

    @property
    def top(self) -> int:
        return 40 + self.controls + self.caption


def _checked_steps(runs: Runs) -> list[int]:
    modes = list(runs)
    if not modes:
        raise ValueError("replay_figure needs at least one run")
    steps = [frame.step for frame in runs[modes[0]]]
    if any([frame.step for frame in runs[mode]] != steps for mode in modes):
        raise ValueError("replay_figure needs runs recorded at the same steps")
    return steps


def _spectrum_bars(runs: Runs, index: int) -> list[go.Bar]:
    bars = []
    for mode, frames in runs.items():
        spectrum = frames[index].spectrum
        bars.append(
            go.Bar(
                x=[[mode] * len(spectrum), [f"s̃{i}" for i in range(1, len(spectrum) + 1)]],
                y=spectrum,
                text=[f"{value:.2f}" for value in spectrum],
                textposition="outside",
                marker_color=MODE_COLOURS[mode],
                name=mode,
                showlegend=False,
                hovertemplate=f"{mode} %{{x}}: %{{y:.3f}}<extra></extra>",
            )
        )
    return bars


def _embedding_traces(
    frame: ToyFrame, labels: tuple[np.ndarray, np.ndarray], style: ToyStyle, legend: bool
) -> list[Any]:
    train = class_traces(frame.train_embeddings, labels[0], "train", style, legend=legend)
    return train + class_traces(frame.test_embeddings, labels[1], "test", style, legend=legend)


def _frame_data(runs: Runs, index: int, labels: tuple[np.ndarray, np.ndarray]) -> list[dict]:
    """What changes between frames, in the order of the moving traces: each mode's spectrum
    (bars), then per mode the coordinates of each class of each split."""
    data: list[dict[str, Any]] = []
    for frames in runs.values():
        spectrum = frames[index].spectrum
        data.append({"type": "bar", "y": spectrum, "text": [f"{v:.2f}" for v in spectrum]})
    for frames in runs.values():
        frame = frames[index]
        embeddings = (frame.train_embeddings, frame.test_embeddings)
        for points, split_labels, (_, colours) in zip(embeddings, labels, SPLITS, strict=True):
            kind = "scatter3d" if points.shape[1] == 3 else "scatter"
            for label in range(len(colours)):  # the traces of :func:`class_traces`
                chosen = points[split_labels == label]
                data.append({"type": kind, **dict(zip("xyz", chosen.T, strict=False))})
    return data


def unit_shape(three_d: bool) -> go.Scatter | go.Surface:
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
        x=np.cos(angle), y=np.sin(angle), mode="lines", line={"color": "#bbb", "width": 1},
        hoverinfo="skip", showlegend=False, name="unit circle",
    )  # fmt: skip


def _mode_caption(mode: str, frame: ToyFrame) -> str:
    """Two short lines above a mode's embedding: its name and step, then test R@1 and ρ@1."""
    metrics = frame.metrics
    return (
        f"<b>{mode}</b> · step {frame.step}<br>"
        f"test R@1 {metrics['test_recall@1']:.2f} · ρ@1 {metrics['rho@1']:.2f}"
    )


def _note(text: str, x: float, y: float, anchor: str, size: int) -> dict[str, Any]:
    return {
        "text": text, "x": x, "y": y, "xref": "paper", "yref": "paper", "xanchor": anchor,
        "yanchor": "bottom", "showarrow": False, "font": {"size": size},
    }  # fmt: skip


def _caption_places(figure: go.Figure, count: int, three_d: bool, plot_height: int):
    """Where the captions go: the centre of each mode's column, and the height (paper
    coordinates) just above the spectrum's bars."""
    centres = []
    for position in range(count):
        suffix = "" if position == 0 else str(position + 1)
        domain = (
            figure.layout[f"scene{suffix}"].domain.x
            if three_d
            else figure.layout[f"xaxis{suffix}"].domain
        )
        centres.append(sum(domain) / 2)
    spectrum_top = figure.layout[f"yaxis{'' if three_d else count + 1}"].domain[1]
    return centres, spectrum_top + 12 / plot_height


def _annotations(runs: Runs, index: int, places, style: ToyStyle) -> list[dict[str, Any]]:
    """Each mode's caption above its embedding and the spectrum's title above the bars."""
    centres, spectrum_y = places
    notes = [
        _note(_mode_caption(mode, frames[index]), centre, 1.0, "center", style.font)
        for (mode, frames), centre in zip(runs.items(), centres, strict=True)
    ]
    return [*notes, _note(SPECTRUM_TITLE, 0, spectrum_y, "left", style.font)]


def _embedding_axes(figure: go.Figure, count: int, three_d: bool) -> None:
    """±AXIS_LIMIT on every embedding axis; in 3-D a cube seen from far enough back."""
    if three_d:
        # No tick labels: at the cube's corners those of two axes overlap, and the unit sphere
        # already gives the scale.
        axis = {
            "range": [-AXIS_LIMIT, AXIS_LIMIT],
            "dtick": 1,
            "title": "",
            "showticklabels": False,
        }
        figure.update_scenes(
            xaxis=axis, yaxis=axis, zaxis=axis, aspectmode="cube",
            camera={"eye": {"x": 1.6, "y": 1.6, "z": 1.05}}, uirevision="toy",
        )  # fmt: skip
        return
    for position in range(count):
        suffix = "" if position == 0 else str(position + 1)
        cell = {"row": 1, "col": position + 1}
        limits = {"range": [-AXIS_LIMIT, AXIS_LIMIT], "dtick": 1, "constrain": "domain"}
        figure.update_xaxes(**limits, **cell)
        figure.update_yaxes(**limits, constraintoward="top", scaleanchor=f"x{suffix}", **cell)


def _spectrum_axes(figure: go.Figure, count: int, three_d: bool, dims: int) -> None:
    """Bars on [0, 1.18] and the dashed line of a flat spectrum at 1/d."""
    axis = "" if three_d else str(count + 1)
    figure.add_shape(
        type="line", xref=f"x{axis} domain", x0=0, x1=1, yref=f"y{axis}", y0=1 / dims, y1=1 / dims,
        line={"dash": "dash", "color": "#888", "width": 1},
    )  # fmt: skip
    figure.update_yaxes(range=[0, 1.18], dtick=0.25, tickformat=NUMBER_FORMAT, row=2, col=1)


def _grid(count: int, three_d: bool, style: ToyStyle, geometry: Geometry) -> go.Figure:
    plot_height = style.embedding_height + geometry.gap + style.spectrum_height
    return make_subplots(
        rows=2,
        cols=count,
        specs=[
            [{"type": "scene" if three_d else "xy"}] * count,
            [{"type": "xy", "colspan": count}] + [None] * (count - 1),
        ],
        row_heights=[style.embedding_height, style.spectrum_height],
        vertical_spacing=geometry.gap / plot_height,
        horizontal_spacing=0.03 if three_d else 0.06,
    )


def replay_figure(
    runs: Runs,
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    style: ToyStyle = NORMAL_STYLE,
    *,
    animate: bool = True,
) -> go.Figure:
    """``runs[mode]`` (that mode's frames, all at the same steps) side by side, showing the last
    frame; with ``animate``, every frame is a player frame (▶ ¼× ½× 1× 2× / ❚❚ and a step
    slider). Trace order: one spectrum bar trace per mode, then per mode its class traces, then
    the circles or spheres (never animated)."""
    steps = _checked_steps(runs)
    labels = (np.asarray(train_labels), np.asarray(test_labels))
    modes, last = list(runs), len(steps) - 1
    dims = runs[modes[0]][-1].train_embeddings.shape[1]
    three_d, count = dims == 3, len(modes)
    geometry = Geometry(round(2.6 * style.font) + 10, CONTROLS_HEIGHT if animate else 0)
    plot_height = style.embedding_height + geometry.gap + style.spectrum_height
    figure = _grid(count, three_d, style, geometry)
    for bar in _spectrum_bars(runs, last):
        figure.add_trace(bar, row=2, col=1)
    for position, mode in enumerate(modes):
        for trace in _embedding_traces(runs[mode][last], labels, style, position == 0):
            figure.add_trace(trace, row=1, col=position + 1)
    for position in range(count):
        figure.add_trace(unit_shape(three_d), row=1, col=position + 1)
    _spectrum_axes(figure, count, three_d, dims)
    _embedding_axes(figure, count, three_d)
    places = _caption_places(figure, count, three_d, plot_height)

    def title(index: int) -> str:
        return f"embedding at step {steps[index]} of {steps[-1]}"

    figure.update_layout(
        title={"text": title(last), "x": 0, "xanchor": "left", "y": 0.995, "yanchor": "top"},
        annotations=_annotations(runs, last, places, style),
        height=geometry.top + plot_height + geometry.bottom,
        margin={"l": 50, "r": 20, "t": geometry.top, "b": geometry.bottom},
        legend={
            "orientation": "h", "traceorder": "normal", "x": 0, "y": -55 / plot_height,
            "title": {"text": LEGEND_TITLE, "side": "top left"}, "yanchor": "top",
        },
        uirevision="toy",
    )  # fmt: skip
    apply_fonts(figure, style)
    if animate:
        frames = [
            PlayerFrame(
                str(step),
                _frame_data(runs, index, labels),
                {
                    "annotations": _annotations(runs, index, places, style),
                    "title": {"text": title(index)},
                },
            )
            for index, step in enumerate(steps)
        ]
        moving = range(len(frames[0].data))
        controls_top = 1 + (geometry.caption + geometry.controls) / plot_height
        add_player(
            figure,
            frames,
            traces=moving,
            frame_ms=FRAME_MILLISECONDS,
            y=controls_top,
            font_size=style.tick,
        )
    return figure
