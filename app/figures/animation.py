"""The one animation player of the app: a figure's frames (plotly ``frames``) behind a row of
▶ ¼× ½× 1× 2× / ❚❚ buttons and a step slider above the plot. The browser plays, pauses and scrubs
with no round trip to the server. The Toy lab's replay (:mod:`app.figures.replay`) and a run's
snapshots over epochs (:mod:`app.panels.player`) both build their controls here.

plotly.js rejects the promise of an animation that another one interrupts (a second ▶, ❚❚, a
slider click) with no reason; :func:`app.panels.player.show` marks that rejection as handled on the page
(plotly's own console warning about it stays: its logging level is global, not per figure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go

SPEEDS = {"¼×": 0.25, "½×": 0.5, "1×": 1.0, "2×": 2.0}
"""Play buttons: label → speed (a frame stays ``frame_ms / speed`` on screen)."""
CONTROLS_HEIGHT = 70
"""Height in px of the row of buttons and slider; the figure keeps this much room above its
plots for it."""
PAUSE_LABEL = "❚❚"
PLAYER_CONFIG = {"displayModeBar": False}
"""Streamlit ``config`` of a player: no toolbar over the titles."""
MAX_SLIDER_LABELS = 10
STILL = {
    "mode": "immediate",
    "frame": {"duration": 0, "redraw": True},
    "transition": {"duration": 0},
}
"""Animation options of a jump to one frame (a slider step, the pause button)."""


@dataclass(frozen=True)
class PlayerFrame:
    """One step of an animation: its name (also its slider label), the new values of the
    moving traces in their order, and layout changes (title, annotations) at that step."""

    name: str
    data: Sequence[Any]
    layout: Mapping[str, Any] = field(default_factory=dict)


def play_button(label: str, speed: float, frame_ms: int) -> dict[str, Any]:
    """▶ ``label``: plays from the shown frame (from the start when at the end)."""
    options = {
        "mode": "immediate",
        "fromcurrent": True,
        "frame": {"duration": round(frame_ms / speed), "redraw": True},
        "transition": {"duration": 0},
    }
    return {"label": f"▶ {label}", "method": "animate", "args": [None, options]}


def slider_labels(names: Sequence[str]) -> list[str]:
    """Every name when there are few, else every n-th (at most :data:`MAX_SLIDER_LABELS`)."""
    every = max(1, -(-len(names) // MAX_SLIDER_LABELS))
    return [name if index % every == 0 else "" for index, name in enumerate(names)]


def add_player(
    figure: go.Figure,
    frames: Sequence[PlayerFrame],
    *,
    traces: Sequence[int],
    frame_ms: int,
    y: float,
    font_size: int = 13,
    active: int | None = None,
) -> go.Figure:
    """``frames`` as ``figure``'s animation of the trace indices ``traces``; the buttons at the
    left and the slider at the right of one row whose top is at ``y`` (paper coordinates, above
    1 for a row above the plots). The slider starts at ``active`` (default: the last frame,
    which the figure's own traces should show)."""
    if not frames:
        raise ValueError("an animation needs at least one frame")
    figure.frames = [
        go.Frame(
            name=frame.name, data=list(frame.data), traces=list(traces), layout=dict(frame.layout)
        )
        for frame in frames
    ]
    names = [frame.name for frame in frames]
    buttons = [play_button(label, speed, frame_ms) for label, speed in SPEEDS.items()]
    buttons.append({"label": PAUSE_LABEL, "method": "animate", "args": [[None], STILL]})
    steps = [
        {"method": "animate", "label": label, "args": [[name], STILL]}
        for name, label in zip(names, slider_labels(names), strict=True)
    ]
    figure.update_layout(
        updatemenus=[
            {
                "type": "buttons",
                "direction": "left",
                "showactive": False,
                "x": 0,
                "xanchor": "left",
                "y": y,
                "yanchor": "top",
                "pad": {"t": 4, "r": 4},
                "font": {"size": font_size},
                "buttons": buttons,
            }
        ],
        sliders=[
            {
                "active": len(frames) - 1 if active is None else active,
                "x": 0.45,
                "len": 0.55,
                "y": y,
                "yanchor": "top",
                "pad": {"t": 6},
                "currentvalue": {"visible": False},
                "font": {"size": max(9, font_size - 2)},
                "steps": steps,
            }
        ],
    )
    return figure
