"""Inspect one checkpoint or embedding file, both opened as one :class:`app.sources.Opened` split
(docs/DESIGN.md §6, §7): a checkpoint's metrics and projection come from its stored evaluation, so
no dataset is needed (the dataset adds thumbnails only; one without the section is evaluated once
and cached); a file is scored here under its protocol. The sections are the same for both; a
checkpoint adds its history and configuration, and a run folder with snapshots plays its embedding
over epochs."""

from __future__ import annotations

import streamlit as st

from app import item_images, sources
from app.checkpoints import CHECKPOINT_DIRS_VARIABLE, allowed_roots
from app.panels import common
from app.panels import inspect as inspect_panels
from app.panels import projection as projection_panels
from app.panels.player import snapshot_paths
from dml_core.engine.checkpoint_header import CheckpointError
from dml_core.metrics import singular_value_spectrum

KEY = "inspect"

heading = st.empty()
heading.title("Inspect")
unreadable: list[str] = []
entries = sources.discover_sources(unreadable=unreadable)  # checkpoints, then embedding files
common.unreadable_files(unreadable)
labels = [entry.label for entry in entries]
path_entered = bool(st.session_state.get("inspect-path", "").strip())  # the field below wins
picked = st.selectbox(
    "checkpoint or embedding file",
    labels,
    index=0 if labels else None,
    key="inspect-checkpoint",
    disabled=path_entered,
    help="Not used while a path is entered below: clear the path to pick from this list."
    if path_entered
    else None,
)
typed = st.text_input(
    "…or a path (under the allowed folders)",
    key="inspect-path",
    help=f"Allowed: {', '.join(map(str, allowed_roots()))}; add folders with {CHECKPOINT_DIRS_VARIABLE}.",
)
target = typed.strip() or next((e.path for e in entries if e.label == picked), None)
if target is None:
    st.info(
        "No checkpoint or embedding file found under the allowed folders "
        f"({', '.join(map(str, allowed_roots()))}). Train one on the Train page, or set "
        f"{CHECKPOINT_DIRS_VARIABLE}."
    )
    st.stop()

try:
    source = sources.resolve_source(target)
    splits = sources.source_splits(source)
    split = st.selectbox("split", splits, key=f"{KEY}-split") if len(splits) > 1 else splits[0]
    opened = common.open_source(source, split)
except sources.NotEvaluated as missing:
    heading.title(f"Inspect {missing.source.path.name}")
    inspect_panels.not_evaluated(missing)
    st.stop()
except (CheckpointError, ValueError, OSError) as error:
    st.error(str(error))
    st.stop()

heading.title(f"Inspect {source.path.name}")
st.caption(inspect_panels.describe(opened))
if opened.note is not None:
    st.info(f"Evaluated here once and cached: {opened.note}.", icon="ℹ️")
metrics, report = common.analysed(opened)
count = len(opened.labels)

st.subheader(f"Projection of the {opened.split} split")
method = st.radio(
    "projection",
    ["UMAP", "PCA"],
    index=0 if opened.umap is not None else 1,  # a stored UMAP at once; else asked for
    horizontal=True,
    key=f"{KEY}-method-{source.path}",  # per file: another file starts from its own default
    label_visibility="collapsed",
)
coordinates, shown = projection_panels.layout(opened, method)
projection_panels.explorer(  # a fragment: its clicks and filters rerun only itself
    coordinates,
    opened,
    report,
    title=f"{shown} · {count} {opened.split} items",
    key=f"{KEY}-projection",
)
previews = st.container()

st.subheader("Metrics")
inspect_panels.metrics_table({opened.split: metrics}, key=f"{KEY}-metrics")
st.caption(
    {
        "stored": "Stored in the checkpoint when it was evaluated.",
        "file": f"Scored here from the file's embeddings ({opened.protocol}).",
    }.get(opened.origin, "Computed here from the dataset (the checkpoint stores none).")
)
if opened.metadata is not None:
    inspect_panels.history_panel(opened.metadata, key=KEY)
    with st.expander("configuration"):
        st.json(opened.config)
if opened.run_dir is not None and snapshot_paths(opened.run_dir):
    st.subheader("The embedding over epochs (this run's snapshots)")
    projection_panels.snapshot_player(opened.run_dir, opened.class_names, key=f"{KEY}-player")

st.subheader("Singular-value spectrum")
common.spectrum_panel(
    {opened.split: singular_value_spectrum(opened.embeddings)}, key=f"{KEY}-spectrum"
)
st.subheader(f"Per-class density ({opened.split})")
common.density_panel(opened.embeddings, opened.labels, opened.class_names, key=KEY)

# Pictures come last: a checkpoint's dataset is opened only for them, after the rest is drawn.
image_uri = common.image_uri(opened)
if image_uri is None:
    previews.caption(item_images.thumbnail_note(opened))
st.subheader(f"Retrieval ({opened.split}, {opened.protocol})")
inspect_panels.retrieval_explorer(report, opened, image_uri, key=f"{KEY}-retrieval")
st.subheader("Confused classes")
inspect_panels.confusion_panel(report, opened, image_uri, key=f"{KEY}-confusion")
st.subheader("Export")
inspect_panels.export_panel(opened, key=f"{KEY}-export")
