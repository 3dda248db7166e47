"""Streamlit pieces for projections: a scatter that reports its selection and highlights items,
thumbnails of a selection, a wait that reruns the page once a background UMAP lands, and the
snapshot player of a run (:mod:`app.player`)."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import streamlit as st

from app import analysis, figures, panels, player
from app.checkpoints import CheckpointView, checkpoint_evaluation, dataset_problem, split_dataset
from app.projection import background
from app.settings import umap_enabled
from dml_core.engine.stored_evaluation import StoredEvaluation


@st.cache_resource(
    show_spinner="Evaluating the checkpoint (it carries no stored evaluation)…", max_entries=16
)
def checkpoint_view(path: str, mtime_ns: int) -> CheckpointView:
    """:func:`app.checkpoints.checkpoint_evaluation`, kept in memory per file version."""
    return checkpoint_evaluation(path)


def placeholder_uri(row: int) -> str:
    """An SVG tile naming the item, where no image can be shown."""
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
        '<rect width="64" height="64" fill="#eee"/><text x="32" y="36" font-size="11" '
        f'text-anchor="middle" fill="#555">#{html.escape(str(row))}</text></svg>'
    )
    return "data:image/svg+xml;utf8," + quote(svg)


def row_images(
    metadata: dict[str, Any], evaluation: StoredEvaluation
) -> tuple[Callable[[int], str] | None, str | None]:
    """``(image of a row, None)`` when the checkpoint's dataset is here, else ``(None, why)``."""
    problem = dataset_problem(metadata)
    if problem is not None:
        return None, (
            f"Dataset {metadata['config']['dataset']!r} is not on this machine, so there are no "
            "thumbnails; everything else comes from the checkpoint."
        )
    dataset = split_dataset(metadata["config"], "test")
    item_ids = evaluation.item_ids
    return (lambda row: analysis.png_data_uri(dataset.thumbnail(int(item_ids[row]), 64))), None


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
    figure = figures.projection_figure(coordinates, labels, class_names, title=title, extent=extent)
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


def thumbnails(
    rows: Sequence[int],
    labels: np.ndarray,
    class_names: Sequence[str],
    image_uri: Callable[[int], str] | None,
    dataset_note: str | None,
) -> None:
    """The first images of a selection, or why there are none."""
    if not rows:
        st.caption("Box/lasso-select or click points to highlight items and see their images.")
        return
    if image_uri is None:
        st.caption(f"{len(rows)} selected. {dataset_note or 'No images for this dataset.'}")
        return
    panels.selection_preview(rows, labels, class_names, image_uri)


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
            panels.rerun_when_ready(
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
    st.plotly_chart(figure, key=f"{key}-player")
