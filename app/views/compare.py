"""Compare two or more checkpoints: metrics with deltas, spectra overlaid, projections side by
side, and the same query's top-k row from each."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from app import analysis, figures, panels
from app.checkpoints import dataset_problem, discover_checkpoints
from app.projection import projection_key
from dml_core.engine.checkpoint import CheckpointError
from dml_core.metrics import singular_value_spectrum

st.title("Compare checkpoints")
entries = {entry.label: entry.path for entry in discover_checkpoints()}
chosen = st.multiselect(
    "checkpoints (the first is the reference for Δ)",
    list(entries),
    default=list(entries)[:2],
    key="compare-checkpoints",
)
if len(chosen) < 2:
    st.info("Pick at least two checkpoints.")
    st.stop()

loaded = {}
for label in chosen:
    try:
        path, mtime = panels.file_version(entries[label])
        loaded[label] = (path, mtime, panels.checkpoint_metadata(path, mtime))
    except (CheckpointError, FileNotFoundError) as error:
        st.error(f"{label}: {error}")
        st.stop()

stored = {
    label: dict(metadata["history"][-1]) if metadata.get("history") else {}
    for label, (_, _, metadata) in loaded.items()
}
missing = {label: dataset_problem(metadata) for label, (_, _, metadata) in loaded.items()}
available = [label for label in chosen if missing[label] is None]
for label in chosen:
    if missing[label] is not None:
        st.warning(
            f"{label}: its dataset is not available here; showing its stored metrics only. "
            f"({missing[label]})",
            icon="⚠️",
        )

tables: dict[str, dict[str, float]] = {}
embedded = {}
reports = {}
for label in chosen:
    if label not in available:
        tables[label] = {k: v for k, v in stored[label].items() if k.startswith("test/")}
        continue
    path, mtime, metadata = loaded[label]
    split = panels.checkpoint_embedding(path, mtime, "test")
    keep = min(analysis.RETRIEVAL_COLUMNS, len(split.labels) - 1)
    ks = tuple(k for k in metadata["config"].get("eval_ks", (1, 2, 4, 8)) if k < len(split.labels))
    metrics, reports[label] = panels.split_analysis(split.embeddings, split.labels, ks, keep)
    tables[label] = {f"test/{k}": v for k, v in metrics.items()}
    embedded[label] = split

st.subheader("Metrics (Δ against the first)")
keys = sorted(k for k in set().union(*tables.values()) if not k.startswith("test/num_"))
st.dataframe(
    pd.DataFrame(analysis.metric_comparison(tables, keys)), hide_index=True, key="compare-metrics"
)

if not embedded:
    st.stop()
st.subheader("Spectra (test)")
panels.spectrum_panel(
    {label: singular_value_spectrum(split.embeddings) for label, split in embedded.items()},
    key="compare-spectrum",
)

st.subheader("Projections (test)")
columns = st.columns(len(embedded))
for column, (label, split) in zip(columns, embedded.items(), strict=True):
    path, _, metadata = loaded[label]
    dataset = panels.dataset_for(json.dumps(metadata["config"]), "test")
    with column:
        panels.projection_panel(
            projection_key(path, "test", "umap"),
            split.embeddings,
            split.labels,
            list(dataset.class_names),
            panels.image_uri_getter(dataset),
            key=f"compare-projection-{label}",
            title=label,
        )

st.subheader("The same query, top-k from each")
sizes = {len(split.labels) for split in embedded.values()}
if len(sizes) != 1:
    st.info("The checkpoints were evaluated on different test sets; query rows need the same one.")
    st.stop()
num_items = sizes.pop()
query = st.number_input("query index", 0, num_items - 1, 0, key="compare-query")
k = st.slider("neighbours", 1, analysis.RETRIEVAL_COLUMNS, 5, key="compare-k")
for label, split in embedded.items():
    _, _, metadata = loaded[label]
    dataset = panels.dataset_for(json.dumps(metadata["config"]), "test")
    row = analysis.retrieval_rows(reports[label], split.labels, [int(query)], k)
    st.markdown(f"**{label}**")
    st.html(
        figures.retrieval_grid_html(
            row, panels.image_uri_getter(dataset), lambda c, names=dataset.class_names: names[c]
        )
    )
