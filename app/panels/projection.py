"""Streamlit pieces for projections: the layout of an opened split (stored, else PCA at once and
UMAP in the background), a scatter that reports its selection and highlights items, and the
snapshot player of a run (:mod:`app.panels.player`)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import numpy as np
import streamlit as st

from app.figures.projection import projection_figure
from app.panels import common, player
from app.projection import background, is_cached, pca_2d, projection_key, umap_projection
from app.settings import umap_enabled
from app.sources import Opened


def layout(opened: Opened, method: str) -> tuple[np.ndarray, str]:
    """The 2-D layout of ``opened`` for ``method`` (``UMAP`` or ``PCA``) and what it is: the stored
    projection when the source has one (nothing recomputed), else PCA at once and UMAP from the
    background thread (cached on disk under the file's identity; PCA while it computes)."""
    pca = pca_layout(opened)
    if method != "UMAP":
        return pca, "PCA"
    if opened.umap is not None:
        return opened.umap, "UMAP"
    if not umap_enabled():
        st.caption("UMAP is turned off (DML_EXPLORER_UMAP=off): PCA.")
        return pca, "PCA"
    key = umap_key(opened)
    computed = umap_projection(key, opened.embeddings)
    if computed is not None:
        return computed, "UMAP"
    common.rerun_when_ready(
        lambda: is_cached(key), "UMAP is computing in the background; PCA until then."
    )
    return pca, "PCA (UMAP computing)"


def pca_layout(opened: Opened) -> np.ndarray:
    """The stored PCA, else the PCA of the embeddings."""
    return opened.pca if opened.pca is not None else pca_2d(opened.embeddings)


def umap_key(opened: Opened) -> str:
    """The disk-cache key of the UMAP the app fits for ``opened`` (its file's identity)."""
    return projection_key(opened.source.path, opened.split, "umap-interactive")


def placeholder_uri(row: int) -> str:
    """An SVG tile naming the item, where no image can be shown."""
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
        '<rect width="64" height="64" fill="#eee"/><text x="32" y="36" font-size="11" '
        f'text-anchor="middle" fill="#555">#{html.escape(str(row))}</text></svg>'
    )
    return "data:image/svg+xml;utf8," + quote(svg)


def scatter(
    coordinates: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    title: str,
    key: str,
    highlight: Sequence[int] | None = None,
    extent: tuple[float, float, float, float] | None = None,
) -> list[int]:
    """The projection (axes fixed to ``extent`` if given); ``highlight`` rows drawn on top of the
    faded rest. Returns the rows the user selected (click, box or lasso)."""
    figure = projection_figure(coordinates, labels, class_names, title=title, extent=extent)
    if highlight:
        figure.update_traces(
            selectedpoints=list(highlight),
            selected={"marker": {"size": 9, "opacity": 1.0}},
            unselected={"marker": {"opacity": 0.12}},
        )
    event = st.plotly_chart(
        figure, key=key, on_select="rerun", selection_mode=("points", "box", "lasso")
    )
    return list(event.selection.point_indices) if event else []


def snapshot_player(
    run_dir: Path, class_names: Sequence[str] | None, *, key: str, allow_umap: bool = True
) -> None:
    """The run's snapshots over epochs: PCA frames at once, the aligned UMAP chain when the
    background thread has it (``allow_umap``: not while the run trains); a slider and a play
    button (client-side animation)."""
    snapshots = player.same_items([player.read_snapshot(p) for p in player.snapshot_paths(run_dir)])
    if len(snapshots) < 2:
        st.caption("The run has fewer than two snapshots: nothing to play yet.")
        return
    epochs = [s.epoch for s in snapshots]
    labels = snapshots[-1].labels
    with_umap = allow_umap and umap_enabled()
    methods = ["UMAP (aligned)", "PCA (aligned)"] if with_umap else ["PCA (aligned)"]
    method = st.radio("layout", methods, horizontal=True, key=f"{key}-method")
    frames = player.aligned_pca_frames(snapshots)
    if method.startswith("UMAP"):
        cached = player.cached_umap_frames(snapshots)
        if all(frame is not None for frame in cached):
            frames = cached
        else:
            chain_key = player.umap_chain_keys(snapshots)[-1]

            def ready() -> bool:
                return (
                    background(chain_key, lambda: player.compute_umap_frames(snapshots)) is not None
                )

            ready()
            common.rerun_when_ready(
                ready, "The aligned UMAP of the snapshots is computing; PCA until then."
            )
            method = "PCA (aligned)"
    figure = player.animation_figure(
        epochs,
        frames,
        labels,
        class_names,
        title=f"{method} of {len(labels)} test items over epochs",
    )
    player.show(figure, key=f"{key}-player")
