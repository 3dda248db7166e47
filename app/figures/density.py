"""Per-class figures: each class's density against its nearest neighbour class, and the
per-class change between two embeddings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from app.figures.palette import HIT_BORDER, MISS_BORDER, compact


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
    return compact(figure)


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
    return compact(figure, max(300, 22 * len(chosen) + 90))
