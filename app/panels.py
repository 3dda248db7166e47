"""Streamlit pieces the pages share: cached loaders and the spectrum, projection, density and
retrieval panels. Figures and numbers come from the pure modules (figures, analysis, projection).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app import analysis, figures
from app.checkpoints import Embedded, embed_split, resolve_checkpoint, split_dataset
from app.projection import pca_2d, umap_projection
from app.settings import umap_enabled
from dml_core.engine.checkpoint import read_metadata
from dml_core.metrics import per_class_density

UMAP_POLL_SECONDS = 1.0
SELECTION_PREVIEW = 24


@st.cache_data(show_spinner=False, max_entries=64)
def checkpoint_metadata(path: str, mtime_ns: int) -> dict[str, Any]:
    """Header-only metadata, cached per file version (``mtime_ns`` is part of the key)."""
    return read_metadata(path)


@st.cache_data(show_spinner="Embedding the split…", max_entries=16)
def checkpoint_embedding(path: str, mtime_ns: int, split: str) -> Embedded:
    return embed_split(Path(path), split)


@st.cache_data(show_spinner="Scoring retrieval…", max_entries=16)
def split_analysis(
    embeddings: np.ndarray, labels: np.ndarray, ks: tuple[int, ...], keep: int
) -> tuple[dict[str, float], analysis.RetrievalReport]:
    return analysis.analyse_split(embeddings, labels, ks, keep)


def dataset_for(config_json: str, split: str) -> Any:
    """The dataset a config (as JSON) names, for thumbnails: :func:`app.checkpoints.split_dataset`."""
    return split_dataset(json.loads(config_json), split)


def file_version(path: Path) -> tuple[str, int]:
    resolved = resolve_checkpoint(path)
    return str(resolved), resolved.stat().st_mtime_ns


def image_uri_getter(dataset: Any) -> Callable[[int], str]:
    return lambda index: analysis.png_data_uri(dataset.thumbnail(int(index), 64))


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
        _pending_umap(projection_key, embeddings, labels, class_names, key, title)
        return
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
        st.caption(f"{len(selected)} selected; the first {min(len(selected), SELECTION_PREVIEW)}:")
        preview = selected[:SELECTION_PREVIEW]
        st.html(
            "".join(
                f'<img src="{image_uri(i)}" width="56" title="#{i} {class_names[int(labels[i])]}" '
                'style="margin:2px"/>'
                for i in preview
            )
        )
    elif image_uri is not None:
        st.caption("Box/lasso-select or click points to see their images.")


@st.fragment(run_every=UMAP_POLL_SECONDS)
def _pending_umap(
    projection_key: str,
    embeddings: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    key: str,
    title: str,
) -> None:
    if umap_projection(projection_key, embeddings) is not None:
        st.rerun(scope="app")
    st.caption("UMAP is computing in the background; PCA until it is ready.")
    figure = figures.projection_figure(
        pca_2d(embeddings), labels, class_names, title=f"{title} PCA".strip()
    )
    st.plotly_chart(figure, key=f"{key}-pending")


def density_panel(
    embeddings: np.ndarray, labels: np.ndarray, class_names: Sequence[str], key: str
) -> None:
    rows = analysis.density_table(per_class_density(embeddings, labels), class_names)
    left, right = st.columns([3, 2])
    left.plotly_chart(figures.density_figure(rows), key=f"{key}-density")
    right.dataframe(pd.DataFrame(rows), hide_index=True, height=360)


def retrieval_panel(
    report: analysis.RetrievalReport,
    labels: np.ndarray,
    class_names: Sequence[str],
    image_uri: Callable[[int], str],
    *,
    key: str,
) -> None:
    """Retrieval grid (picked or random queries) and the worst queries by AP@R."""
    columns = st.columns(3)
    k = columns[0].slider("neighbours", 1, report.neighbor_indices.shape[1], 5, key=f"{key}-k")
    chosen = columns[1].text_input("query indices (comma-separated)", key=f"{key}-queries")
    seed = columns[2].number_input("random seed", 0, 10_000, 0, key=f"{key}-seed")
    queries = _parse_indices(chosen, len(labels)) or analysis.random_queries(
        len(labels), 4, int(seed)
    )
    rows = analysis.retrieval_rows(report, labels, queries, k)
    st.html(figures.retrieval_grid_html(rows, image_uri, lambda c: class_names[c]))
    st.markdown("**Worst queries by AP@R**")
    worst = analysis.worst_queries(report.average_precision_at_r, 4)
    ap = report.average_precision_at_r
    worst_rows = analysis.retrieval_rows(report, labels, worst, k)
    st.html(
        figures.retrieval_grid_html(
            worst_rows,
            image_uri,
            lambda c: class_names[c],
            caption=lambda row: f"#{row.query} AP@R {ap[row.query]:.2f}",
        )
    )


def _parse_indices(text: str, num_items: int) -> list[int]:
    indices = []
    for part in text.replace(" ", "").split(","):
        if part.isdigit() and int(part) < num_items:
            indices.append(int(part))
    return indices


def best_projection(projection_key: str, embeddings: np.ndarray) -> tuple[np.ndarray, str]:
    """UMAP if ready (queued otherwise), else PCA: ``(coordinates, method name)``."""
    coordinates = umap_projection(projection_key, embeddings)
    if coordinates is not None:
        return coordinates, "UMAP"
    return pca_2d(embeddings), "PCA (UMAP computing)" if umap_enabled() else "PCA"
