"""Train live: launch ``python -m dml_core train`` in the background, tail its events, overlay
several runs' curves, and draw the latest embedding snapshot of one as each evaluation lands.

Refresh policy: the live section is a fragment that re-reads the events every
``LIVE_REFRESH_SECONDS`` only while a run it shows is going; with none going it never reruns by
itself (no idle work), and a run started from this page shows up at once because starting it
reruns the page.
"""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from app import analysis, runs
from app.checkpoints import DATASET_ERRORS, split_dataset
from app.figures.curves import curves_figure
from app.figures.density import density_figure
from app.figures.images import retrieval_grid_html
from app.figures.spectrum import spectrum_figure
from app.format import metric_text
from app.panels import projection as projection_panels
from app.settings import LIVE_REFRESH_SECONDS, shown_path
from dml_core.data import DATASETS
from dml_core.engine.evaluation import SNAPSHOT_AUTO_LIMIT
from dml_core.io.arrays import check_npz
from dml_core.losses import LOSSES
from dml_core.metrics import per_class_density, singular_value_spectrum
from dml_core.miners import MINERS
from dml_core.models import ARCHS
from dml_core.presets import PRESETS
from dml_core.samplers import SAMPLERS

TRAINABLE_PRESETS = ["glyphs", "toy", *sorted(p for p in PRESETS if p.startswith("paper-"))]
# Session-state keys (a bare string here would be drawn by Streamlit's magic, hence comments).
# Runs to overlay, kept across pages (the widget's own state is dropped when it is not drawn):
SELECTION = "train-selection"
# Run names this browser session has already seen; a run not among them is new and joins:
KNOWN = "train-known"
LAUNCHED = "train-launched"
STATES = "train-states"
OVERLAY_WIDGET = "train-overlay"
SNAPSHOT_QUERIES = 3
HIDE_STATUS_STOP = '[data-testid="stStatusWidget"] button { display: none; }'
"""While runs refresh live: the header's "Running… Stop" keeps its icon, loses the button."""

st.title("Train")
st.caption(
    f"Each run is `python -m dml_core train` in the background, writing to "
    f"`{shown_path(runs.runs_dir())}/<name>/`. "
    "Start one with ρ and one without to compare their spectra: ρ-regularization is meant to "
    "flatten the train spectrum (a lower ρ@k); how far it does on glyphs, loss by loss, is "
    "measured in docs/RESULTS.md."
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
    snapshot_modes = ["auto", "on", "off"]
    snapshots = left.selectbox(
        "embedding snapshots",
        snapshot_modes,
        _index(snapshot_modes, base.get("snapshots", "auto")),
        help=f"auto: written at each evaluation for test sets under {SNAPSHOT_AUTO_LIMIT} items",
    )
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
    name = st.text_input("run name (default: generated)", key="train-name")
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
        "snapshots": snapshots,
    }
    if data_root.strip():
        options["data_root"] = data_root.strip()
    run_name = name.strip() or (
        f"{dataset}-{loss}-{'rho' if use_rho else 'norho'}-s{int(seed)}-{time.strftime('%H%M%S')}"
    )
    # A bad value or data that is not at its root: one red line now, no run folder, no launch.
    problem = runs.launch_problem(options, preset_name)
    if problem is None:
        try:
            run_dir = runs.launch_run(run_name, options, preset=preset_name)
        except (ValueError, FileExistsError) as error:
            problem = str(error)
    if problem is not None:
        st.error(f"Not started: {problem}")
    else:
        st.session_state.setdefault(LAUNCHED, []).append(run_dir.name)
        selection = st.session_state.setdefault(SELECTION, [])
        if run_dir.name not in selection:
            selection.append(run_dir.name)
        st.success(f"started {run_dir.name}: it appears below and is followed live")


def _state(run_dir: Path) -> runs.RunState:
    """The run's state, kept per browser session and tailed incrementally."""
    states = st.session_state.setdefault(STATES, {})
    key = str(run_dir)
    if key not in states:
        states[key] = runs.RunState(run_dir)
    return runs.refresh(states[key])


def _selection(available: list[str], states: dict[str, runs.RunState]) -> list[str]:
    """The runs to overlay: kept from before, plus every run this session has not seen yet (one
    started here or elsewhere, going or already finished); on the first visit, the runs still
    going and those started here, else the newest."""
    known = st.session_state.get(KNOWN)
    if known is None:
        launched = st.session_state.get(LAUNCHED, [])
        chosen = [n for n in available if states[n].running or n in launched] or available[:1]
    else:
        # The widget's value holds the user's latest choice; it is gone after a page switch.
        kept = st.session_state.get(OVERLAY_WIDGET, st.session_state.get(SELECTION, []))
        chosen = [n for n in kept if n in available]
        chosen += [n for n in available if n not in known and n not in chosen]
    st.session_state[KNOWN] = set(available)
    return chosen


@st.cache_data(show_spinner=False, max_entries=8)
def _snapshot_view(path: str, mtime_ns: int) -> dict[str, Any]:
    """Everything drawn from one snapshot file, computed once per file version."""
    check_npz(path)  # headers before numpy allocates
    with np.load(path, allow_pickle=False) as stored:
        embeddings, labels = stored["embeddings"], stored["labels"]
        indices = stored["indices"]
    return {
        "embeddings": embeddings,
        "labels": labels,
        "indices": indices,
        "spectrum": singular_value_spectrum(embeddings),
        "density": per_class_density(embeddings, labels),
    }


@st.cache_data(show_spinner=False, max_entries=8)
def _retrieval_html(path: str, mtime_ns: int, config_json: str) -> str | None:
    """A few random queries of the snapshot with their neighbours as thumbnails (None without
    the run's dataset here)."""
    view = _snapshot_view(path, mtime_ns)
    labels, indices = view["labels"], view["indices"]
    if len(labels) <= 2:
        return None
    try:
        dataset = split_dataset(json.loads(config_json), "test")
        keep = min(analysis.RETRIEVAL_COLUMNS, len(labels) - 1)
        _, report = analysis.analyse_split(view["embeddings"], labels, (1,), keep)
        queries = analysis.random_queries(len(labels), SNAPSHOT_QUERIES, 0)
        rows = analysis.retrieval_rows(report, labels, queries, 6)
        return retrieval_grid_html(
            rows,
            lambda row: analysis.png_data_uri(dataset.thumbnail(int(indices[row]), 64)),
            lambda c: analysis.display_names([dataset.class_names[c]])[0],
        )
    except (*DATASET_ERRORS, NotImplementedError, IndexError):
        return None


def _no_snapshot_note(state: runs.RunState) -> str:
    config = state.config() or {}
    mode = config.get("snapshots", "auto")
    if mode == "off":
        return (
            f"Snapshots are off for this run (snapshots: off{', as its preset sets' if config else ''}"
            "), so there is no embedding to draw. Start it with “embedding snapshots: on” to "
            "watch the embedding."
        )
    if state.running:
        every = config.get("eval_every", 1)
        return f"No snapshot yet: one lands at each evaluation (every {every} epoch(s))."
    if state.latest_eval is not None and mode == "auto":
        return (
            f"No snapshot: with snapshots: auto they are written only for test sets under "
            f"{SNAPSHOT_AUTO_LIMIT} items."
        )
    return "This run wrote no snapshot (it ended before its first evaluation)."


def _snapshot_panels(state: runs.RunState) -> None:
    snapshot = state.latest_snapshot
    if snapshot is None or not snapshot.exists():
        st.caption(_no_snapshot_note(state))
        return
    mtime_ns = snapshot.stat().st_mtime_ns
    try:
        view = _snapshot_view(str(snapshot), mtime_ns)
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as error:
        st.warning(f"Snapshot {snapshot} cannot be read: {error}")
        return
    labels = view["labels"]
    config = state.config() or {}
    class_names = [str(c) for c in range(int(labels.max()) + 1)]
    try:
        class_names = analysis.display_names(split_dataset(config, "test").class_names)
    except DATASET_ERRORS:
        st.caption("The run's dataset cannot be opened here: no class names or thumbnails.")
    st.markdown(f"**{state.name}** · latest snapshot `{snapshot.name}` ({len(labels)} test items)")
    left, right = st.columns(2)
    left.plotly_chart(
        spectrum_figure({state.name: view["spectrum"]}, log_scale=True),
        key="train-snapshot-spectrum",
    )
    with right:
        # Every snapshot, aligned, with a slider and a play button. UMAP would take the CPU from
        # training: aligned PCA frames while the run goes, the aligned UMAP chain once it ended.
        projection_panels.snapshot_player(
            snapshot.parent.parent,
            class_names,
            key="train-snapshot-player",
            allow_umap=not state.running,
        )
    rows = analysis.density_table(view["density"], class_names)
    st.plotly_chart(density_figure(rows), key="train-snapshot-density")
    grid = _retrieval_html(str(snapshot), mtime_ns, json.dumps(config, sort_keys=True))
    if grid is not None:
        st.html(grid)


def _status_line(state: runs.RunState) -> str:
    status = state.status
    parts = [f"`{state.name}`: **{status}**"]
    if status == runs.STOPPING:
        parts[0] += " (finishing its step, then writing `last`)"
    config = state.config() or {}
    latest = next((e for e in reversed(state.events) if "epoch" in e), None)
    if latest is not None:
        parts.append(f"epoch {latest['epoch']}/{config.get('epochs', '?')}")
    evaluation = state.latest_eval
    if evaluation is not None:
        recall = (evaluation.get("metrics") or {}).get("test/recall@1")
        shown = f" R@1 {metric_text(recall)}" if isinstance(recall, (int, float)) else ""
        parts.append(f"evaluated at epoch {evaluation['epoch']}{shown}")
    return " · ".join(parts)


def _live_runs(refreshing: bool) -> None:
    """The runs to overlay, their status, curves and the latest snapshot of one."""
    root = runs.runs_dir()
    available = [path.name for path in runs.discover_runs(root)]
    top = st.columns([6, 1])
    top[1].button("Refresh", key="train-refresh", help="Look for runs started elsewhere")
    if not available:
        top[0].info(f"No runs yet in `{shown_path(root)}`. Start one above.")
        return
    states = {name: _state(root / name) for name in available}
    st.session_state[OVERLAY_WIDGET] = _selection(available, states)
    chosen = top[0].multiselect("runs to overlay", available, key=OVERLAY_WIDGET)
    st.session_state[SELECTION] = list(chosen)
    shown = {name: states[name] for name in chosen}
    if any(state.running for state in shown.values()) != refreshing:
        st.rerun(scope="app")  # start or stop the timer: refresh only while something runs
    for name, state in shown.items():
        status_column, stop_column = st.columns([6, 1])
        if state.failed:
            status_column.error(f"`{name}`: **{state.status}**: {state.error_line()}")
            with st.expander(f"{name}: output"):
                st.code(runs.output_tail(root / name) or "(empty)")
            continue
        # The Stop click is read before the status is drawn, so the status says "stopping…" in
        # this very run (and, from app.stop, on every later one until the run ends).
        stop_slot = stop_column.empty()
        stop_help = "Ends the run after its current step; its checkpoint `last` is kept"
        can_stop = state.running and not state.stopping
        if can_stop and stop_slot.button("Stop", key=f"stop-{name}", help=stop_help):
            runs.stop_run(root / name)
            stop_slot.empty()
        status_column.markdown(_status_line(state))
        if state.unreadable:
            status_column.warning(state.unreadable)
        if state.skipped:
            status_column.warning(state.skipped_note())
        if state.status == "ended without a done event":
            with st.expander(f"{name}: output"):
                st.code(runs.output_tail(root / name))
    plotted = {name: state for name, state in shown.items() if state.events}
    if not plotted:
        return
    st.plotly_chart(
        curves_figure({name: runs.curves(state.events) for name, state in plotted.items()}),
        key="train-curves",
    )
    focus = st.selectbox("snapshot of", list(plotted), key="train-focus")
    _snapshot_panels(plotted[focus])


active = any(_state(runs.runs_dir() / n).running for n in st.session_state.get(SELECTION, []))
if active:  # Streamlit's own Stop would flash in the header at each second's refresh
    st.html(f"<style>{HIDE_STATUS_STOP}</style>")
live = st.fragment(run_every=LIVE_REFRESH_SECONDS if active else None)(_live_runs)
live(active)
