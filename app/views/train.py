"""Train live: launch ``python -m dml_core train`` in the background, tail its events, overlay
several runs' curves, and draw the latest embedding snapshot of one as each evaluation lands."""

from __future__ import annotations

import json
import time

import numpy as np
import streamlit as st

from app import analysis, figures, panels, runs
from app.projection import projection_key
from dml_core.config import PRESETS
from dml_core.data import DATASETS
from dml_core.losses import LOSSES
from dml_core.metrics import singular_value_spectrum
from dml_core.miners import MINERS
from dml_core.models import ARCHS
from dml_core.samplers import SAMPLERS

REFRESH_SECONDS = 2.0
TRAINABLE_PRESETS = ["glyphs", "toy", *sorted(p for p in PRESETS if p.startswith("paper-"))]

st.title("Train")
st.caption(
    "Each run is `python -m dml_core train` in the background, writing to `runs/<name>/`. "
    "Start one with ρ and one without to watch the spectra part ways: on glyphs, contrastive "
    "with ρ = 0.2 flattens the train spectrum clearly (ρ@2 0.84 → 0.47), margin hardly at all "
    "(docs/RESULTS.md)."
)


def _index(options: list[str], value: object) -> int:
    return options.index(value) if value in options else 0


preset_name = st.selectbox(
    "preset (sets the defaults below)", TRAINABLE_PRESETS, key="train-preset"
)
base = PRESETS[preset_name]
with st.form("new-run"):
    left, middle, right = st.columns(3)
    datasets = sorted(DATASETS)
    dataset = left.selectbox("dataset", datasets, _index(datasets, base.get("dataset")))
    data_root = left.text_input("data root (cub200 / cars196 / sop / imagefolder)")
    archs = sorted(ARCHS)
    arch = left.selectbox("architecture", archs, _index(archs, base.get("arch")))
    losses = sorted(LOSSES)
    loss = middle.selectbox("loss", losses, _index(losses, base.get("loss")))
    miners = ["auto", "none", *sorted(MINERS)]
    miner = middle.selectbox("miner", miners, _index(miners, base.get("miner") or "none"))
    use_rho = middle.toggle("ρ-regularization", value=base.get("rho", 0.0) > 0)
    rho = middle.slider("push probability p_ρ", 0.0, 1.0, float(base.get("rho") or 0.35), 0.05)
    samplers = sorted(SAMPLERS)
    sampler = right.selectbox("sampler", samplers, _index(samplers, base.get("sampler")))
    samples_per_class = right.number_input(
        "samples per class", 1, 16, base.get("samples_per_class", 2)
    )
    epochs = right.number_input("epochs", 1, 500, base.get("epochs", 12))
    lr = right.number_input("learning rate", 1e-7, 1.0, base.get("lr", 1e-3), format="%.6f")
    seed = right.number_input("seed", 0, 10_000, 0)
    name = st.text_input("run name (default: generated)")
    started = st.form_submit_button("Start", type="primary")

if started:
    options = {
        "dataset": dataset,
        "arch": arch,
        "loss": loss,
        "miner": None if miner == "none" else miner,
        "rho": rho if use_rho else 0.0,
        "sampler": sampler,
        "samples_per_class": int(samples_per_class),
        "epochs": int(epochs),
        "lr": float(lr),
        "seed": int(seed),
    }
    if data_root.strip():
        options["data_root"] = data_root.strip()
    run_name = name.strip() or (
        f"{dataset}-{loss}-{'rho' if use_rho else 'norho'}-s{int(seed)}-{time.strftime('%H%M%S')}"
    )
    try:
        run_dir = runs.launch_run(run_name, options, preset=preset_name)
    except (ValueError, FileExistsError) as error:
        st.error(str(error))
    else:
        st.session_state.setdefault("train-watched", []).append(run_dir.name)
        st.success(f"started {run_dir}")


def _state(run_dir: object) -> runs.RunState:
    states = st.session_state.setdefault("train-states", {})
    key = str(run_dir)
    if key not in states:
        states[key] = runs.RunState(run_dir)
    return runs.refresh(states[key])


def _snapshot_panels(state: runs.RunState) -> None:
    snapshot = state.latest_snapshot
    if snapshot is None or not snapshot.exists():
        st.caption("No snapshot yet: one lands at each evaluation.")
        return
    with np.load(snapshot, allow_pickle=False) as stored:
        embeddings, labels, indices = stored["embeddings"], stored["labels"], stored["indices"]
    st.markdown(f"**{state.name}** · latest snapshot `{snapshot.name}` ({len(labels)} test items)")
    coordinates, method = panels.best_projection(
        projection_key(snapshot, "snapshot", "umap"), embeddings
    )
    config = state.config() or {}
    class_names = [str(c) for c in range(int(labels.max()) + 1)]
    dataset = None
    try:
        dataset = panels.dataset_for(json.dumps(config), "test")
        class_names = list(dataset.class_names)
    except (ValueError, FileNotFoundError, OSError, KeyError):
        st.caption("The run's dataset cannot be opened here: no thumbnails.")
    left, right = st.columns(2)
    left.plotly_chart(
        figures.spectrum_figure({state.name: singular_value_spectrum(embeddings)}, log_scale=True),
        key="train-snapshot-spectrum",
    )
    right.plotly_chart(
        figures.projection_figure(coordinates, labels, class_names, title=method),
        key="train-snapshot-projection",
    )
    panels.density_panel(embeddings, labels, class_names, key="train-snapshot")
    if dataset is not None and len(labels) > 2:
        keep = min(analysis.RETRIEVAL_COLUMNS, len(labels) - 1)
        _, report = panels.split_analysis(embeddings, labels, (1,), keep)
        rows = analysis.retrieval_rows(
            report, labels, analysis.random_queries(len(labels), 3, 0), 6
        )
        st.html(
            figures.retrieval_grid_html(
                rows,
                lambda row: analysis.png_data_uri(dataset.thumbnail(int(indices[row]), 64)),
                lambda c: class_names[c],
            )
        )


@st.fragment(run_every=REFRESH_SECONDS)
def live_runs() -> None:
    """Tail every watched run; reattaches to runs still going after a reload."""
    available = [path.name for path in runs.discover_runs()]
    if not available:
        st.info("No runs yet under runs/. Start one above.")
        return
    running = {path.name for path in runs.running_runs()}
    watched = st.session_state.setdefault("train-watched", [])
    default = [n for n in available if n in running or n in watched] or available[:1]
    chosen = st.multiselect("runs to overlay", available, default=default, key="train-overlay")
    root = runs.runs_dir()
    states = {run: _state(root / run) for run in chosen}
    for run, state in states.items():
        status_column, stop_column = st.columns([5, 1])
        status_column.markdown(f"`{run}`: **{state.status}**, {len(state.events)} events")
        if state.status == "running" and stop_column.button("Stop", key=f"stop-{run}"):
            runs.stop_run(root / run)
            st.toast(f"stopping {run} (its checkpoint is kept)")
        if state.status == "error":
            st.error(state.finished.get("message") or runs.output_tail(root / run))
        elif state.status == "ended without a done event":
            with st.expander(f"{run}: output"):
                st.code(runs.output_tail(root / run))
    if not states:
        return
    st.plotly_chart(
        figures.curves_figure({run: runs.curves(state.events) for run, state in states.items()}),
        key="train-curves",
    )
    focus = st.selectbox("snapshot of", list(states), key="train-focus")
    _snapshot_panels(states[focus])


live_runs()
