"""The normalised singular-value spectrum s̃_i = s_i / Σs (docs/DESIGN.md §3) of one or more
embeddings against their rank."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go

from app.figures.labels import LEGEND_WIDTH, log_axis, wrap_title
from app.figures.palette import TOP_LEGEND, run_color


def spectrum_figure(
    spectra: Mapping[str, np.ndarray], *, log_scale: bool = False, title: str = ""
) -> go.Figure:
    """One line per spectrum in a distinct colour, the legend above the plot (it never narrows
    the axes); ``log_scale`` labels the y axis at powers of ten."""
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
                line={"color": run_color(index)},
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
