"""Compare two or more checkpoints from what they carry (docs/DESIGN.md §6): metrics with deltas
first, then aligned projections, spectra overlaid, and the same query's top-k row from each.

Checkpoints evaluated on the same items share one layout frame: each UMAP starts from the first
checkpoint's layout (each PCA is rotated onto the first's), so the same item sits in comparable
places, and a selection in any projection highlights the same items in all of them.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import (
    analysis,
    compare_panels,
    figures,
    inspect_panels,
    panels,
    projection_panels,
    sources,
)
from app.cache import cache_key
from app.checkpoints import DATASET_ERRORS
from app.projection import is_cached, procrustes_align, projection_key, umap_projection
from app.settings import umap_enabled
from dml_core.engine.checkpoint import CheckpointError
from dml_core.metrics import singular_value_spectrum

HIGHLIGHT = "compare-highlight"
LAST_SELECTION = "compare-last-selection"

st.title("Compare checkpoints")
unreadable: list[str] = []
entries = {source.label: source.path for source in sources.discover_sources(unreadable=unreadable)}
panels.unreadable_files(unreadable)
chosen = st.multiselect(
    "checkpoints (the first is the reference for Δ and for the layout)",
    list(entries),
    default=list(entries)[:2],
    key="compare-checkpoints",
)
if len(chosen) < 2:
    st.info("Pick at least two checkpoints.")
    st.stop()
if any(sources.is_embedding_file(entries[label]) for label in chosen):
    compare_panels.compare_sources([sources.resolve_source(entries[label]) for label in chosen])
    st.stop()

loaded, views = {}, {}
for label in chosen:
    try:
        path, mtime = panels.file_version(entries[label])
        loaded[label] = (path, mtime, panels.checkpoint_metadata(path, mtime))
    except (CheckpointError, FileNotFoundError) as error:
        st.error(f"{label}: {error}")
        st.stop()
    try:
        views[label] = projection_panels.checkpoint_view(path, mtime)
    except DATASET_ERRORS as error:
        st.warning(
            f"{label} carries no stored evaluation and its dataset is not here: its stored "
            f"history only. ({error})",
            icon="⚠️",
        )

shown = [label for label in chosen if label in views]
evaluations = {label: views[label].evaluation for label in shown}
points = {label: e.embeddings.astype(np.float32) for label, e in evaluations.items()}
class_names = {label: analysis.display_names(e.class_names) for label, e in evaluations.items()}

tables: dict[str, dict[str, float]] = {}
for label in chosen:
    if label in evaluations:
        tables[label] = dict(evaluations[label].metrics)
    else:
        history = loaded[label][2].get("history") or [{}]
        tables[label] = {k: v for k, v in history[-1].items() if k.startswith("test/")}
st.subheader("Metrics (Δ against the first)")
compare_panels.metrics_panel(tables, key="compare-metrics")
if len(shown) < 2:
    st.stop()

reference = shown[0]
same_items = all(
    np.array_equal(e.item_ids, evaluations[reference].item_ids) for e in evaluations.values()
)


def aligned_pcas() -> dict[str, np.ndarray]:
    base = evaluations[reference].pca
    return {
        label: procrustes_align(e.pca, base) if same_items else e.pca
        for label, e in evaluations.items()
    }


st.subheader("Projections (test)")
method = st.radio(
    "projection",
    ["UMAP", "PCA"] if umap_enabled() else ["PCA"],
    horizontal=True,
    key="compare-method",
    label_visibility="collapsed",
)
layouts: dict[str, np.ndarray | None] = {}
pending: list[str] = []
if method == "PCA":
    layouts, title = aligned_pcas(), "PCA, rotated onto #1" if same_items else "PCA"
else:
    reference_path, reference_mtime, _ = loaded[reference]
    first = evaluations[reference].umap
    if first is None:
        first_key = projection_key(reference_path, "test", "umap-interactive")
        first = umap_projection(first_key, points[reference])
        pending += [] if first is not None else [first_key]
    layouts[reference] = first
    for label in shown[1:]:
        path = loaded[label][0]
        if same_items and first is not None:
            anchor = f"{reference_path}|{reference_mtime}"
            key = cache_key(path, "test", "umap-aligned-to", anchor)
            layouts[label] = umap_projection(key, points[label], init=first)
        elif same_items:
            key, layouts[label] = "", None
        else:
            layouts[label] = evaluations[label].umap
            key = projection_key(path, "test", "umap-interactive")
            if layouts[label] is None:
                layouts[label] = umap_projection(key, points[label])
        if layouts[label] is None and key:
            pending.append(key)
    title = "UMAP from #1's layout" if same_items else "UMAP"
    if any(layout is None for layout in layouts.values()):
        panels.rerun_when_ready(
            lambda: all(is_cached(key) for key in pending),
            "The aligned UMAPs are computing; PCA (rotated onto the first) until then.",
        )
        layouts, title = aligned_pcas(), "PCA (UMAP computing)"
if not same_items:
    st.caption("These checkpoints were evaluated on different items: no common layout.")

highlight = st.session_state.get(HIGHLIGHT, []) if same_items else []
last = st.session_state.setdefault(LAST_SELECTION, {})
columns = st.columns(len(shown))
title_width = max(16, 64 // len(shown))  # characters that fit one column's width at 1024 px
names = {label: figures.wrap_title(label, title_width) for label in shown}
name_lines = max(name.count("<br>") for name in names.values())
# Aligned layouts share one frame; names padded to one line count keep the frames level.
extent = figures.common_extent([layouts[label] for label in shown]) if same_items else None
for position, (column, label) in enumerate(zip(columns, shown, strict=True)):
    evaluation = evaluations[label]
    padding = "<br> " * (name_lines - names[label].count("<br>"))
    with column:
        rows = projection_panels.scatter(
            layouts[label],
            evaluation.labels,
            class_names[label],
            title=f"{names[label]}{padding}<br><sub>{title}</sub>",
            key=f"compare-projection-{position}",
            highlight=highlight,
            extent=extent,
        )
    if rows and rows != last.get(label):
        last[label] = rows
        if same_items and rows != highlight:
            st.session_state[HIGHLIGHT] = rows
            st.rerun()
if highlight:
    st.caption(f"{len(highlight)} items highlighted in every projection.")
    if st.button("clear the highlight", key="compare-clear"):
        st.session_state[HIGHLIGHT], st.session_state[LAST_SELECTION] = [], {}
        st.rerun()
else:
    st.caption("Select points (click, box or lasso) in any projection to highlight them in all.")

st.subheader("Spectra (test)")
panels.spectrum_panel(
    {label: singular_value_spectrum(points[label]) for label in shown}, key="compare-spectrum"
)
compare_panels.per_item_views(
    [
        compare_panels.checkpoint_side(
            label,
            loaded[label][2]["config"],
            evaluations[label].labels,
            inspect_panels.split_report(points[label], evaluations[label].labels),
            class_names[label],
            projection_panels.row_images(loaded[label][2], evaluations[label])[0],
        )
        for label in shown
    ],
    key="compare",
)

st.subheader("The same query, top-k from each")
if not same_items:
    st.info("The checkpoints were evaluated on different items; query rows need the same ones.")
    st.stop()
num_items = len(evaluations[reference].labels)
query = st.number_input("query row", 0, num_items - 1, 0, key="compare-query")
k = st.slider("neighbours", 1, analysis.RETRIEVAL_COLUMNS, 5, key="compare-k")
for label in shown:
    evaluation = evaluations[label]
    keep = min(analysis.RETRIEVAL_COLUMNS, num_items - 1)
    _, report = panels.split_analysis(points[label], evaluation.labels, (1,), keep)
    image_uri, _ = projection_panels.row_images(loaded[label][2], evaluation)
    row = analysis.retrieval_rows(report, evaluation.labels, [int(query)], k)
    st.markdown(f"**{label}**")
    st.html(
        figures.retrieval_grid_html(
            row,
            image_uri or projection_panels.placeholder_uri,
            lambda c, names=class_names[label]: names[c],
        )
    )
