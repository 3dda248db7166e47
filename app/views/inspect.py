"""Inspect one checkpoint from what it carries (docs/DESIGN.md §6): metrics, projection, spectrum,
density and retrieval lists come from its stored evaluation, so no dataset is needed; the dataset
adds image thumbnails only. A checkpoint without the section is evaluated once and cached. A
checkpoint inside a run folder with snapshots also plays its embedding over epochs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from app import analysis, figures, inspect_panels, panels, projection_panels, sources
from app.checkpoints import (
    CHECKPOINT_DIRS_VARIABLE,
    DATASET_ERRORS,
    allowed_roots,
    stored_history,
)
from app.player import snapshot_paths
from app.projection import is_cached, projection_key, umap_projection
from app.settings import CURVE_KEYS, umap_enabled
from dml_core.engine.checkpoint import CheckpointError
from dml_core.metrics import singular_value_spectrum
from dml_core.metrics.retrieval import DEFAULT_RECALL_KS

st.title("Inspect a checkpoint")
unreadable: list[str] = []
entries = sources.discover_sources(unreadable=unreadable)  # checkpoints, then embedding files
panels.unreadable_files(unreadable)
labels = [entry.label for entry in entries]
picked = st.selectbox("checkpoint", labels, index=0 if labels else None, key="inspect-checkpoint")
typed = st.text_input(
    "…or a path (under the allowed folders)",
    key="inspect-path",
    help=f"Allowed: {', '.join(map(str, allowed_roots()))}; add folders with {CHECKPOINT_DIRS_VARIABLE}.",
)
target = typed.strip() or next((e.path for e in entries if e.label == picked), None)
if target is None:
    st.info(
        "No checkpoint found under the allowed folders "
        f"({', '.join(map(str, allowed_roots()))}). Train one on the Train page, or set "
        f"{CHECKPOINT_DIRS_VARIABLE}."
    )
    st.stop()

if sources.is_embedding_file(target):
    try:
        inspect_panels.inspect_embedding_file(sources.resolve_source(target))
    except (CheckpointError, FileNotFoundError) as error:
        st.error(str(error))
    st.stop()

try:
    path, mtime = panels.file_version(target)
    metadata = panels.checkpoint_metadata(path, mtime)
except (CheckpointError, FileNotFoundError) as error:
    st.error(str(error))
    st.stop()

config = metadata["config"]
st.caption(
    f"{path} · {config['dataset']} · {config['arch']} · loss {config['loss']} · miner {config['miner']}"
    f" · ρ {config['rho']} · epoch {metadata.get('epoch')}"
)
history = stored_history(metadata)
try:
    view = projection_panels.checkpoint_view(path, mtime)
except DATASET_ERRORS as error:
    st.warning(
        f"This checkpoint carries no stored evaluation and its dataset {config['dataset']!r} is not "
        f"available on this machine, so only its metadata and metric history are shown. Run "
        f"`python -m dml_core project {path}` where the data is to store the evaluation in it."
        f"\n\n{error}",
        icon="⚠️",
    )
    if history:
        st.dataframe(pd.DataFrame(history), hide_index=True, key="inspect-history-table")
        keys = [k for k in CURVE_KEYS if k in history[-1]]
        st.plotly_chart(figures.history_figure(history, keys), key="inspect-history")
    st.stop()
evaluation = view.evaluation
if view.note is not None:
    st.info(f"Evaluated here once and cached: {view.note}.", icon="ℹ️")
points = evaluation.embeddings.astype(np.float32)
item_labels, class_names = evaluation.labels, analysis.display_names(evaluation.class_names)

st.subheader("Projection of the test split")
method = st.radio(
    "projection",
    ["UMAP", "PCA"],
    horizontal=True,
    key="inspect-method",
    label_visibility="collapsed",
)
coordinates, shown = evaluation.pca, "PCA"
if method == "UMAP" and evaluation.umap is not None:
    coordinates, shown = evaluation.umap, "UMAP"
elif method == "UMAP" and umap_enabled():
    umap_key = projection_key(path, "test", "umap-interactive")
    computed = umap_projection(umap_key, points)
    if computed is not None:
        coordinates, shown = computed, "UMAP"
    else:
        shown = "PCA (UMAP computing)"
        panels.rerun_when_ready(
            lambda: is_cached(umap_key), "UMAP is computing in the background; PCA until then."
        )
selected = inspect_panels.projection_explorer(
    coordinates,
    points,
    item_labels,
    class_names,
    title=f"{shown} · {len(item_labels)} test items",
    key="inspect-projection",
)
previews = st.container()

st.subheader("Metrics")
test_metrics = {k.removeprefix("test/"): v for k, v in evaluation.metrics.items()}
inspect_panels.metrics_table({"test": test_metrics}, key="inspect-metrics")
st.caption(
    "Stored in the checkpoint when it was evaluated."
    if view.source == "stored"
    else "Computed here from the dataset (the checkpoint stores none)."
)
inspect_panels.history_panel(metadata, key="inspect")
with st.expander("configuration"):
    st.json(config)

run_dir = Path(path).parent
if snapshot_paths(run_dir):
    st.subheader("The embedding over epochs (this run's snapshots)")
    projection_panels.snapshot_player(run_dir, class_names, key="inspect-player")

st.subheader("Singular-value spectrum")
panels.spectrum_panel({"test": singular_value_spectrum(points)}, key="inspect-spectrum")
st.subheader("Per-class density (test)")
panels.density_panel(points, item_labels, class_names, key="inspect")

# The dataset is needed for thumbnails only; it is opened after everything else is drawn.
row_image, dataset_note = projection_panels.row_images(metadata, evaluation)
with previews:
    inspect_panels.selection_details(
        selected, points, item_labels, class_names, row_image, key="inspect-projection"
    )
    if dataset_note:
        st.caption(dataset_note)
st.subheader("Retrieval (test, leave-one-out)")
ks = tuple(k for k in (config.get("eval_ks") or DEFAULT_RECALL_KS) if k < len(item_labels))
keep = min(analysis.RETRIEVAL_COLUMNS, len(item_labels) - 1)
_, report = panels.split_analysis(points, item_labels, ks, keep)
inspect_panels.retrieval_explorer(
    report, points, item_labels, class_names, row_image, key="inspect-retrieval"
)
st.subheader("Confused classes")
inspect_panels.confusion_panel(report, item_labels, class_names, row_image, key="inspect-confusion")
st.subheader("Export")
opened = sources.opened_from_evaluation(evaluation, config)
inspect_panels.export_panel(
    sources.Source(Path(path), str(path), "checkpoint"),
    opened,
    sources.checkpoint_thumbnail(config, opened),
    key="inspect-export",
)
