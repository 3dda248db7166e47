"""Streamlit pieces the pages share: cached loaders and the spectrum, projection and density
panels. Figures and numbers come from the pure modules (figures, analysis, projection).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app import analysis, figures
from app.checkpoints import resolve_checkpoint
from app.projection import pca_2d, umap_projection
from app.settings import umap_enabled
from dml_core.engine.checkpoint import read_metadata
from dml_core.metrics import per_class_density

POLL_SECONDS = 1.0
"""How often a page asks whether a background job (a UMAP) has finished."""
SELECTION_PREVIEW = 24
"""Thumbnails shown of a selection."""


@st.cache_data(show_spinner=False, max_entries=64)
def checkpoint_metadata(path: str, mtime_ns: int) -> dict[str, Any]:
    """Header-only metadata, cached per file version (``mtime_ns`` is part of the key)."""
    return read_metadata(path)


@st.cache_data(show_spinner="Scoring retrieval…", max_entries=16)
def split_analysis(
    embeddings: np.ndarray,
    labels: np.ndarray,
    ks: tuple[int, ...],
    keep: int,
    is_query: np.ndarray | None = None,
    is_gallery: np.ndarray | None = None,
) -> tuple[dict[str, float], analysis.RetrievalReport]:
    return analysis.analyse_split(embeddings, labels, ks, keep, is_query, is_gallery)


def file_version(path: Path) -> tuple[str, int]:
    resolved = resolve_checkpoint(path)
    return str(resolved), resolved.stat().st_mtime_ns


def spectrum_panel(spectra: dict[str, np.ndarray], key: str) -> None:
    """Linear and log spectra side by side."""
    left, right = st.columns(2)
    left.plotly_chart(figures.spectrum_figure(spectra), key=f"{key}-lin")
    right.plotly_chart(figures.spectrum_figure(spectra, log_scale=True), key=f"{key}-log")


def projection_panel(
    projection_key: str,
    embeddings: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    image_uri: Callable[[int], str] | None,
    *,
    key: str,
    title: str = "",
) -> None:
    """PCA at once; UMAP replaces it when the background thread has it (polled by a fragment)."""
    method = st.radio(
        "projection",
        ["UMAP", "PCA"],
        horizontal=True,
        key=f"{key}-method",
        label_visibility="collapsed",
    )
    coordinates = umap_projection(projection_key, embeddings) if method == "UMAP" else None
    if method == "UMAP" and coordinates is None and not umap_enabled():
        st.caption("UMAP is turned off (DML_EXPLORER_UMAP=off): PCA.")
        method = "PCA"
    elif method == "UMAP" and coordinates is None:
        rerun_when_umap_ready(projection_key, embeddings)
        method = "PCA"
    if coordinates is None:
        coordinates = pca_2d(embeddings)
    figure = figures.projection_figure(
        coordinates, labels, class_names, title=f"{title} {method}".strip()
    )
    event = st.plotly_chart(
        figure, key=f"{key}-chart", on_select="rerun", selection_mode=("points", "box", "lasso")
    )
    selected = list(event.selection.point_indices) if event else []
    if selected and image_uri is not None:
        selection_preview(selected, labels, class_names, image_uri)
    elif image_uri is not None:
        st.caption("Box/lasso-select or click points to see their images.")


@st.fragment(run_every=POLL_SECONDS)
def rerun_when_ready(ready: Callable[[], bool], message: str) -> None:
    """Poll ``ready`` every second while a background job runs (and only then); rerun the page
    when it turns true."""
    if ready():
        st.rerun(scope="app")
    st.caption(message)


def rerun_when_umap_ready(projection_key: str, embeddings: np.ndarray) -> None:
    """:func:`rerun_when_ready` on the background UMAP of ``embeddings`` under ``projection_key``."""
    rerun_when_ready(
        lambda: umap_projection(projection_key, embeddings) is not None,
        "UMAP is computing in the background; PCA until it is ready.",
    )


def selection_preview(
    rows: Sequence[int],
    labels: np.ndarray,
    class_names: Sequence[str],
    image_uri: Callable[[int], str],
) -> None:
    """The first :data:`SELECTION_PREVIEW` images of a selection, each with its index and class."""
    preview = list(rows)[:SELECTION_PREVIEW]
    st.caption(f"{len(rows)} selected; the first {len(preview)}:")
    st.html(figures.thumbnails_html(preview, image_uri, lambda i: class_names[int(labels[i])]))


def unreadable_files(unreadable: Sequence[str]) -> None:
    """The files under the allowed folders that could not be read, one line each, folded away so
    the page goes on (``unreadable`` from :func:`app.sources.discover_sources`)."""
    if unreadable:
        count = len(unreadable)
        with st.expander(f"{count} unreadable file{'s' if count > 1 else ''} left out"):
            for line in unreadable:
                st.text(f"unreadable: {line}")


def density_panel(
    embeddings: np.ndarray, labels: np.ndarray, class_names: Sequence[str], key: str
) -> None:
    rows = analysis.density_table(per_class_density(embeddings, labels), class_names)
    left, right = st.columns([3, 2])
    left.plotly_chart(figures.density_figure(rows), key=f"{key}-density")
    right.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        height=360,
        column_config={
            "pi_intra": st.column_config.NumberColumn(
                "π_intra", help="mean intra-class distance (1 − cos)", format="%.3f"
            ),
            "nearest class": st.column_config.TextColumn("nearest"),
            "distance to nearest class": st.column_config.NumberColumn(
                "to nearest", help="distance to the nearest class mean (1 − cos)", format="%.3f"
            ),
        },
    )
