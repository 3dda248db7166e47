"""Compare two or more checkpoints or embedding files, each opened as one
:class:`app.sources.Opened` split (docs/DESIGN.md §6, §7): metrics with deltas first (a
checkpoint's stored ones, a file's scored here, each as Inspect shows them), then aligned
projections, spectra overlaid, per-class Δ, disagreements and the same query's top-k from each.

Splits of the same items (:func:`app.sources.per_item_problem`, one test for both kinds) share one
layout frame: each UMAP starts from the first one's layout (each PCA is rotated onto the first's),
so the same item sits in comparable places, and a selection in any projection highlights the same
items in all of them.
"""

from __future__ import annotations

import streamlit as st

from app import analysis, sources
from app.figures.images import retrieval_grid_html
from app.panels import common
from app.panels import compare as compare_panels
from app.panels import projection as projection_panels
from app.settings import umap_enabled
from dml_core.engine.checkpoint_header import CheckpointError
from dml_core.metrics import singular_value_spectrum

st.title("Compare")
unreadable: list[str] = []
entries = {source.label: source for source in sources.discover_sources(unreadable=unreadable)}
common.unreadable_files(unreadable)
chosen = st.multiselect(
    "checkpoints or embedding files (the first is the reference for Δ and for the layout)",
    list(entries),
    default=list(entries)[:2],
    key="compare-checkpoints",
)
if len(chosen) < 2:
    st.info("Pick at least two checkpoints or embedding files.")
    st.stop()

opened: dict[str, sources.Opened] = {}
tables: dict[str, dict[str, float]] = {}
for label in chosen:
    try:
        opened[label] = common.open_source(entries[label])
    except sources.NotEvaluated as missing:
        st.warning(
            f"{label} carries no stored evaluation and its dataset is not here: its stored "
            f"history only. ({missing})",
            icon="⚠️",
        )
        last = (missing.metadata.get("history") or [{}])[-1]
        tables[label] = {k: v for k, v in last.items() if k.startswith("test/")}
    except (CheckpointError, ValueError, OSError) as error:
        st.error(f"{label}: {error}")
        st.stop()
shown = [label for label in chosen if label in opened]
reports = {}
for label in shown:
    metrics, reports[label] = common.analysed(opened[label])
    tables[label] = {f"{opened[label].split}/{k}": v for k, v in metrics.items()}
st.subheader("Metrics (Δ against the first)")
compare_panels.metrics_panel({label: tables[label] for label in chosen}, key="compare-metrics")
if len(shown) < 2:
    st.stop()
problem = sources.per_item_problem([opened[label] for label in shown])
same_items = problem is None
if problem is not None:
    compare_panels.per_item_warning(problem)

st.subheader("Projections")
method = st.radio(
    "projection",
    ["UMAP", "PCA"] if umap_enabled() else ["PCA"],
    horizontal=True,
    key="compare-method",
    label_visibility="collapsed",
)
layouts = compare_panels.aligned_layouts(
    {label: opened[label] for label in shown}, method, same_items
)
compare_panels.linked_projections(  # a fragment: selections rerun only the projections
    {label: opened[label] for label in shown}, layouts, same_items
)
sides = [compare_panels.side(opened[label], reports[label]) for label in shown]

st.subheader("Spectra")
common.spectrum_panel(
    {label: singular_value_spectrum(opened[label].embeddings) for label in shown},
    key="compare-spectrum",
)
if not same_items:
    st.stop()
compare_panels.per_item_views(sides, key="compare")

st.subheader("The same query, top-k from each")
num_items = len(sides[0].labels)
query = st.number_input("query row", 0, num_items - 1, 0, key="compare-query")
k = st.slider("neighbours", 1, analysis.RETRIEVAL_COLUMNS, 5, key="compare-k")
for side in sides:
    row = analysis.retrieval_rows(side.report, side.labels, [int(query)], k)
    st.markdown(f"**{side.name}**")
    st.html(
        retrieval_grid_html(
            row,
            side.image_uri or projection_panels.placeholder_uri,
            lambda c, names=side.class_names: analysis.class_name(names, c),
        )
    )
