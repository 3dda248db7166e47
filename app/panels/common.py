"""Streamlit pieces Inspect and Compare share: the one cached way to open a source
(:func:`open_source`), the metrics and retrieval report of an opened split (:func:`analysed`), its
pictures, and the spectrum, density and selection panels. Figures and numbers come from the pure
modules (figures, analysis, projection).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from app import analysis, item_images, sources
from app.cache import file_version
from app.figures.density import density_figure
from app.figures.images import thumbnails_html
from app.figures.spectrum import spectrum_figure
from app.format import number_column, rounded
from app.sources import Opened, Source
from dml_core.interop.projection_file import read_file_projection
from dml_core.metrics import per_class_density

POLL_SECONDS = 1.0
"""How often a page asks whether a background job (a UMAP) has finished."""
SELECTION_PREVIEW = 24
"""Thumbnails shown of a selection."""


@st.cache_resource(
    show_spinner="Opening (a checkpoint without a stored evaluation is evaluated once)…",
    max_entries=16,
)
def _opened(path: str, label: str, kind: str, mtime_ns: int, size: int, split: str) -> Opened:
    opened = sources.open_split(Source(Path(path), label, kind), split)
    if kind != "embeddings":
        return opened
    stored = read_file_projection(path, opened.split, len(opened.labels))
    if stored is None:  # no `project` sidecar for this content: PCA here, UMAP in the background
        return opened
    return replace(opened, pca=stored.pca, umap=stored.umap)


def open_source(source: Source, split: str = "test") -> Opened:
    """:func:`app.sources.open_split`, kept in memory per file version (path, mtime, size) and
    split: one object for both pages and every rerun; an embedding file's PCA and UMAP come from
    its ``<file>.projection.npz`` (``python -m dml_core project FILE``) when that names the file's
    content. Raises what ``open_split`` raises."""
    _, mtime_ns, size = file_version(source.path)
    return _opened(str(source.path), source.label, source.kind, mtime_ns, size, split)


@st.cache_resource(show_spinner=False, max_entries=16)
def _image_uri(
    path: str, mtime_ns: int, size: int, split: str, _opened: Opened
) -> Callable[[int], str] | None:
    return item_images.image_uri_getter(item_images.thumbnail_getter(_opened))


def image_uri(opened: Opened) -> Callable[[int], str] | None:
    """``row → data URI`` of the item's picture (:mod:`app.item_images`), None when the source
    has no pictures here; built once per file version."""
    _, mtime_ns, size = file_version(opened.source.path)
    return _image_uri(str(opened.source.path), mtime_ns, size, opened.split, opened)


def _version(opened: Opened) -> tuple[str, int, int, str, str]:
    """What names one opened split in the in-memory caches: its file's version, split and items
    (no hashing of the arrays at each rerun)."""
    path, mtime_ns, size = file_version(opened.source.path)
    return str(path), mtime_ns, size, opened.split, opened.signature


@st.cache_resource(show_spinner="Scoring retrieval…", max_entries=16)
def _split_analysis(
    version: tuple[str, int, int, str, str],
    ks: tuple[int, ...],
    keep: int,
    scored: bool,
    _opened: Opened,
) -> tuple[dict[str, float], analysis.RetrievalReport]:
    if _opened.kind == "embeddings":  # `project FILE` stored what would be computed here
        stored = read_file_projection(_opened.source.path, _opened.split, len(_opened.labels))
        report = None if stored is None else stored.report
        if report is not None and stored.ks == ks and report.neighbor_indices.shape[1] == keep:
            return dict(report.metrics), report
    return analysis.analyse_split(
        _opened.embeddings,
        _opened.labels,
        ks,
        keep,
        _opened.is_query,
        _opened.is_gallery,
        scored=scored,
    )


def analysed(opened: Opened) -> tuple[dict[str, float], analysis.RetrievalReport]:
    """What both pages show of a split: its metrics (a checkpoint's stored ones, else scored here;
    keys without the split) and the per-query retrieval report (its kNN), each under the source's
    protocol (queries against the gallery when it has ``is_query``/``is_gallery``, else
    leave-one-out). Computed once per file version and kept in memory: a click recomputes none of
    it; a checkpoint's stored metrics are not scored again (its kNN report alone is computed)."""
    labels = opened.labels
    ks = tuple(k for k in opened.ks if k < len(labels))
    keep = min(analysis.RETRIEVAL_COLUMNS, len(labels) - 1)
    scored, report = _split_analysis(_version(opened), ks, keep, opened.metrics is None, opened)
    if opened.metrics is None:
        return scored, report
    prefix = f"{opened.split}/"
    return {k.removeprefix(prefix): v for k, v in opened.metrics.items()}, report


@st.cache_resource(show_spinner="Finding nearest positives and negatives…", max_entries=16)
def _nearest_other(
    version: tuple[str, int, int, str, str], _opened: Opened
) -> analysis.NearestOther:
    if _opened.is_query is None and _opened.is_gallery is None:  # leave-one-out: from the kNN
        report = analysed(_opened)[1]
        return analysis.nearest_other_from_report(report, _opened.embeddings, _opened.labels)
    return analysis.nearest_other(_opened.embeddings, _opened.labels)


def nearest_other(opened: Opened) -> analysis.NearestOther:
    """The nearest positive and negative of each item (:mod:`app.nearest`), once per file
    version; read off the retrieval report's neighbours where the protocol allows."""
    return _nearest_other(_version(opened), opened)


def spectrum_panel(spectra: dict[str, np.ndarray], key: str) -> None:
    """Linear and log spectra side by side."""
    left, right = st.columns(2)
    left.plotly_chart(spectrum_figure(spectra), key=f"{key}-lin")
    right.plotly_chart(spectrum_figure(spectra, log_scale=True), key=f"{key}-log")


@st.fragment(run_every=POLL_SECONDS)
def rerun_when_ready(ready: Callable[[], bool], message: str) -> None:
    """Poll ``ready`` every second while a background job runs (and only then); rerun the page
    when it turns true."""
    if ready():
        st.rerun(scope="app")
    st.caption(message)


def selection_preview(
    rows: Sequence[int],
    labels: np.ndarray,
    class_names: Sequence[str],
    image_uri: Callable[[int], str],
) -> None:
    """The first :data:`SELECTION_PREVIEW` images of a selection, each with its index and class."""
    preview = list(rows)[:SELECTION_PREVIEW]
    st.caption(f"{len(rows)} selected; the first {len(preview)}:")
    st.html(thumbnails_html(preview, image_uri, lambda i: class_names[int(labels[i])]))


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
    left.plotly_chart(density_figure(rows), key=f"{key}-density")
    table = pd.DataFrame(rows)
    for column in ("pi_intra", "distance to nearest class"):
        if column in table:
            table[column] = table[column].map(rounded)  # one formatter (app/format.py)
    right.dataframe(
        table,
        hide_index=True,
        height=360,
        column_config={
            "class": st.column_config.TextColumn("class", width=90),
            "items": st.column_config.NumberColumn("items", width=48),
            "pi_intra": number_column(
                "π_intra", help="mean intra-class distance (1 − cos)", width=66
            ),
            "nearest class": st.column_config.TextColumn("nearest", width=90),
            "distance to nearest class": number_column(
                "to nearest", help="distance to the nearest class mean (1 − cos)", width=74
            ),
        },
    )
