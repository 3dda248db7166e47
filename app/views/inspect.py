"""Inspect one checkpoint: config, stored metrics, and (with the dataset) every metric, the
spectrum, a projection with image selection, per-class density, a retrieval grid, worst queries."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from app import analysis, figures, panels
from app.checkpoints import (
    CHECKPOINT_DIRS_VARIABLE,
    allowed_roots,
    dataset_problem,
    discover_checkpoints,
    stored_history,
)
from app.projection import projection_key
from dml_core.engine.checkpoint import CheckpointError
from dml_core.metrics import singular_value_spectrum

st.title("Inspect a checkpoint")
entries = discover_checkpoints()
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

try:
    path, mtime = panels.file_version(target)
    metadata = panels.checkpoint_metadata(path, mtime)
except (CheckpointError, FileNotFoundError) as error:
    st.error(str(error))
    st.stop()

config = metadata["config"]
st.caption(
    f"{path} · {config['dataset']} · {config['arch']} · loss {config['loss']} · miner {config['miner']}"
    f" · ρ {config['rho']} · epoch {metadata.get('epoch')} · best {metadata.get('best')}"
)
with st.expander("configuration"):
    st.json(config)
history = stored_history(metadata)
if history:
    keys = [
        k
        for k in ("test/recall@1", "test/map@r", "train/rho@2", "train/pi_ratio")
        if k in history[-1]
    ]
    st.plotly_chart(figures.history_figure(history, keys), key="inspect-history")
    with st.expander("stored metrics per evaluation"):
        st.dataframe(pd.DataFrame(history), hide_index=True)

problem = dataset_problem(metadata)
if problem is not None:
    st.warning(
        f"Dataset {config['dataset']!r} is not available on this machine, so embeddings cannot be "
        f"computed; showing the stored metadata and metrics only.\n\n{problem}",
        icon="⚠️",
    )
    st.stop()

use_train = st.toggle("also embed the train classes (eval_train) for ρ and π", value=False)
embedded = {"test": panels.checkpoint_embedding(path, mtime, "test")}
if use_train:
    embedded["train"] = panels.checkpoint_embedding(path, mtime, "eval_train")

ks = tuple(config.get("eval_ks") or (1, 2, 4, 8))
metric_columns = {}
reports = {}
for name, split in embedded.items():
    keep = min(analysis.RETRIEVAL_COLUMNS, len(split.labels) - 1)
    valid_ks = tuple(k for k in ks if k < len(split.labels))
    metric_columns[name], reports[name] = panels.split_analysis(
        split.embeddings, split.labels, valid_ks, keep
    )
st.subheader("Metrics")
st.dataframe(pd.DataFrame(metric_columns), key="inspect-metrics")

test = embedded["test"]
dataset = panels.dataset_for(json.dumps(config), "test")
class_names = list(dataset.class_names)
image_uri = panels.image_uri_getter(dataset)

st.subheader("Singular-value spectrum")
panels.spectrum_panel(
    {name: singular_value_spectrum(split.embeddings) for name, split in embedded.items()},
    key="inspect-spectrum",
)
st.subheader("Projection of the test split")
panels.projection_panel(
    projection_key(path, "test", "umap"),
    test.embeddings,
    test.labels,
    class_names,
    image_uri,
    key="inspect-projection",
)
st.subheader("Per-class density (test)")
panels.density_panel(test.embeddings, test.labels, class_names, key="inspect")
st.subheader("Retrieval (test, leave-one-out)")
panels.retrieval_panel(
    reports["test"], test.labels, class_names, image_uri, key="inspect-retrieval"
)
