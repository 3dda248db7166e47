"""Toy lab: the paper's diagonal-lines experiment, trained live in-process through the toy API.

Train classes lie along diagonal lines; the zero-shot test classes differ only along the other
direction. The base embedding collapses onto the direction the train labels need and the test
classes overlap; the paper's regularized run keeps a second direction alive (Roth et al. 2020).
Every run is recorded frame by frame and replayed in the browser (play, pause, speed, scrub);
"Train side by side" trains several modes with one seed and spells out their differences.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pandas as pd
import streamlit as st

from app import toy_text
from app.figures import replay
from app.figures import toy as toy_plots
from app.format import metric_text
from app.panels import player
from app.settings import REPO_ROOT
from toy import MODE_DESCRIPTIONS, TOY_MODES, ToyRecording, ToySettings, record_toy, toy_data
from toy.api import RESULT_METRICS
from toy.study import run_study, versus_reference

STORED_STUDY = REPO_ROOT / "docs" / "toy" / "toy_study.json"
SAMPLERS = {"random (as published)": "random", "class-balanced": "class_random"}
DEFAULTS: dict[str, Any] = {
    "toy-presentation": False,
    "toy-mode": "base",
    "toy-compare-modes": ["base", "paper"],
    "toy-push": 0.2,
    "toy-seed": 0,
    "toy-dim": 2,
    "toy-sampler": "random (as published)",
    "toy-margin": 0.1,
    "toy-iterations": 200,
    "toy-lr": 0.03,
}
KEPT_RECORDINGS = 16
# (metric, label, st.metric delta colour, decimals, term of toy_text.TERMS) in each mode's panel
PANEL_METRICS = (
    ("test_recall@1", "test Recall@1", "normal", 2, "test Recall@1"),
    ("rho@1", "ρ@1 (lower = flatter)", "inverse", 3, "ρ@1"),
    ("pi_ratio", "π_ratio", "normal", 4, "π_ratio"),
)
PAGE_CSS = """
<style>
[data-testid="stMainBlockContainer"] { padding-left: 2rem; padding-right: 2rem; }
</style>
"""
PRESENTATION_CSS = """
<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"] { display: none; }
[data-testid="stMainBlockContainer"] { padding-top: 2.5rem; max-width: 100%; }
[data-testid="stMain"] [data-testid="stMarkdown"] p,
[data-testid="stMain"] [data-testid="stMarkdown"] li { font-size: 1.3rem; }
[data-testid="stMain"] [data-testid="stCaptionContainer"] { font-size: 1.1rem; }
[data-testid="stMain"] [data-testid="stMetricValue"],
[data-testid="stMain"] [data-testid="stMetricValue"] p { font-size: 2.6rem; }
[data-testid="stMain"] [data-testid="stMetricDelta"],
[data-testid="stMain"] [data-testid="stMetricDelta"] p { font-size: 1.2rem; }
[data-testid="stMain"] [data-testid="stMetricLabel"] p { font-size: 1.1rem; }
[data-testid="stMain"] h1 { font-size: 2.6rem !important; }
</style>
"""

state = st.session_state
for key, value in DEFAULTS.items():
    state.setdefault(key, value)
    state[key] = state[key]  # keeps a hidden widget's value (Streamlit drops unrendered ones)
presentation = bool(state["toy-presentation"])
st.markdown(PAGE_CSS + (PRESENTATION_CSS if presentation else ""), unsafe_allow_html=True)
st.title("Toy lab: diagonal lines")


def presentation_toggle(where) -> None:
    where.toggle(
        "presentation mode",
        key="toy-presentation",
        help="large fonts and plots, fewer controls, no sidebar",
    )


def push_slider(where, uses_push: bool) -> float:
    """The p_ρ slider, disabled unless mode rho is among the modes that will train."""
    unused = "" if uses_push else " Disabled: mode rho is not selected."
    return where.slider(
        "push probability p_ρ",
        0.0,
        1.0,
        step=0.05,
        key="toy-push",
        disabled=not uses_push,
        help=toy_text.TERMS["p_ρ"] + " " + toy_text.TERMS["swaps"] + unused,
    )


def modes_picker(where):
    return where.multiselect(
        "modes side by side",
        TOY_MODES,
        key="toy-compare-modes",
        help=toy_text.modes_help(TOY_MODES),
    )


def embedding_radio(where) -> int:
    return where.radio(
        "embedding", [2, 3], format_func=lambda d: f"{d}-D", key="toy-dim", horizontal=True
    )


if presentation:  # one row of controls on the page, the sidebar hidden
    row = st.columns([3, 2, 1, 1.1, 1.8])
    compare_modes = modes_picker(row[0])
    mode = state["toy-mode"]
    push_probability = push_slider(row[1], "rho" in compare_modes)
    seed = row[2].number_input("seed", 0, 10_000, key="toy-seed")
    embed_dim = embedding_radio(row[3])
    presentation_toggle(row[4])
else:
    with st.sidebar:
        presentation_toggle(st)
        st.header("Toy settings")
        mode = st.selectbox(
            "mode (Train)",
            TOY_MODES,
            key="toy-mode",
            format_func=lambda m: f"{m}: {MODE_DESCRIPTIONS[m]}",
            help=toy_text.modes_help(TOY_MODES),
        )
        compare_modes = modes_picker(st)
        uses_push = "rho" in (mode, *compare_modes)
        push_probability = push_slider(st, uses_push)
        if not uses_push:
            st.caption("p_ρ: used by mode rho only (not selected).")
        st.radio("batch sampler", list(SAMPLERS), key="toy-sampler")
        st.slider("margin", 0.05, 1.0, step=0.05, key="toy-margin")
        st.slider("iterations", 20, 1000, step=20, key="toy-iterations")
        st.select_slider("learning rate", [0.003, 0.01, 0.03, 0.1, 0.3], key="toy-lr")
        seed = st.number_input("seed", 0, 10_000, key="toy-seed")
        embed_dim = embedding_radio(st)

settings = ToySettings(
    mode=mode,
    push_probability=float(push_probability),
    sampler=SAMPLERS[state["toy-sampler"]],
    margin=float(state["toy-margin"]),
    lr=float(state["toy-lr"]),
    iterations=int(state["toy-iterations"]),
    seed=int(seed),
    embed_dim=int(embed_dim),
)
style = toy_plots.toy_style(presentation)
data = toy_data(settings.seed)

data_column, story_column = st.columns([3, 2])
data_column.plotly_chart(
    toy_plots.data_figure(data, style), key="toy-data", config=toy_plots.PLOT_CONFIG
)
if presentation:
    story_column.markdown(toy_text.PRESENTATION_STORY)
else:
    story_column.markdown(toy_text.STORY)
    story_column.caption(toy_text.STORY_CAPTION)

if presentation:
    compare_column, note_column = st.columns([1.4, 3.6])
    train_clicked = False
else:
    train_column, compare_column, note_column = st.columns([1, 1.4, 2.6])
    train_clicked = train_column.button("Train", type="primary", key="toy-train")
compare_clicked = compare_column.button(
    "Train side by side",
    key="toy-compare",
    disabled=not compare_modes,
    type="primary" if presentation else "secondary",
)
note_column.caption(
    (f"Train: mode {mode}. " if not presentation else "")
    + f"Side by side: {', '.join(compare_modes) or 'no mode selected'}, all with seed "
    f"{settings.seed}."
)
status_area = st.empty()
display_area = st.empty()


def recording_key(run_settings: ToySettings) -> tuple:
    return tuple(sorted(run_settings.effective().items()))


def recorded(run_settings: ToySettings, on_frame=None) -> ToyRecording:
    """The recording of ``run_settings`` (runs are deterministic per seed: trained once per session)."""
    cache: dict[tuple, ToyRecording] = state.setdefault("toy-recordings", {})
    key = recording_key(run_settings)
    if key not in cache:
        cache[key] = record_toy(run_settings, on_frame=on_frame)
        while len(cache) > KEPT_RECORDINGS:
            cache.pop(next(iter(cache)))
    return cache[key]


def draw_live(frame) -> None:
    display_area.plotly_chart(
        replay.replay_figure(
            {settings.mode: [frame]},
            data["train_labels"],
            data["test_labels"],
            style,
            animate=False,
        ),
        key=f"toy-live-{frame.step}",
        config=toy_plots.PLOT_CONFIG,
    )


if train_clicked:
    state.get("toy-recordings", {}).pop(recording_key(settings), None)  # show it train again
    recorded(settings, on_frame=draw_live)
    state["toy-shown"] = {"kind": "single", "modes": [mode], "settings": settings}
if compare_clicked and compare_modes:
    progress = status_area.progress(0.0, text="training…")
    for index, compared in enumerate(compare_modes):
        progress.progress(index / len(compare_modes), text=f"training {compared}…")
        recorded(replace(settings, mode=compared))
    status_area.empty()
    state["toy-shown"] = {"kind": "compare", "modes": list(compare_modes), "settings": settings}


def shown_changed(shown: dict) -> bool:
    """Whether the current controls would train something other than what is shown (p_ρ counts
    only for mode rho)."""
    selected = [mode] if shown["kind"] == "single" else list(compare_modes)
    return selected != shown["modes"] or any(
        recording_key(replace(settings, mode=m))
        != recording_key(replace(shown["settings"], mode=m))
        for m in shown["modes"]
    )


def mode_panels(recordings: dict[str, ToyRecording]) -> None:
    """One bordered panel per mode: its final metrics and, beside the reference mode (base when
    shown, else the first), the difference to it; then what the side by side shows, in words."""
    metrics = {m: recording.result.metrics for m, recording in recordings.items()}
    reference = "base" if "base" in metrics else next(iter(metrics))
    deltas = versus_reference(metrics, reference)
    for column, (shown_mode, values) in zip(st.columns(len(metrics)), metrics.items(), strict=True):
        with column.container(border=True, key=f"toy-panel-{shown_mode}"):
            st.markdown(
                f"**{shown_mode}** · {MODE_DESCRIPTIONS[shown_mode]}",
                help=toy_text.MODES[shown_mode],
            )
            for name, label, colour, digits, term in PANEL_METRICS:
                delta = None
                if shown_mode != reference:
                    change = metric_text(deltas[shown_mode][name], digits, signed=True)
                    delta = f"{change} vs {reference}"
                st.metric(
                    label,
                    metric_text(values[name], digits),
                    delta,
                    delta_color=colour,
                    help=toy_text.TERMS[term],
                )
    spectra = {m: recording.result.spectrum for m, recording in recordings.items()}
    with st.container(key="toy-in-words"):
        for sentence in toy_text.comparison_sentences(reference, metrics, spectra):
            st.markdown(sentence)
    others = [m for m in metrics if m != reference]
    if others and not presentation:
        st.markdown(
            f"**Versus {reference}, same seed {next(iter(recordings.values())).result.settings.seed}"
            " (same data, initialisation and batches):** "
            + "; ".join(
                f"*{m}*: ρ@1 {metric_text(deltas[m]['rho@1'], 3, signed=True)}, test Recall@1 "
                f"{metric_text(deltas[m]['test_recall@1'], 3, signed=True)}, "
                f"π_ratio {metric_text(deltas[m]['pi_ratio'], signed=True)}"
                for m in others
            )
            + ". One seed: the seeds below show how much of that is luck."
        )
    if presentation:  # the help icons' sentences, visible
        st.container(key="toy-glossary").markdown(toy_text.glossary_markdown(list(metrics)))
    else:
        rows = toy_text.comparison_rows(metrics, deltas, spectra)
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="toy-compare-table")


shown = state.get("toy-shown")
if shown is None:
    status_area.info(
        "Press Train to watch one mode's embedding form, or Train side by side to compare modes."
    )
else:
    shown_settings = shown["settings"]
    recordings = {m: recorded(replace(shown_settings, mode=m)) for m in shown["modes"]}
    first = next(iter(recordings.values())).result
    with display_area.container():
        player.show(
            replay.replay_figure(
                {m: r.frames for m, r in recordings.items()},
                first.train_labels,
                first.test_labels,
                style,
            ),
            key="toy-spectrum-and-embeddings",
        )
        mode_panels(recordings)
        st.plotly_chart(
            toy_plots.loss_figure({m: r.result.losses for m, r in recordings.items()}, style),
            key="toy-loss",
            config=toy_plots.PLOT_CONFIG,
        )
    if shown_changed(shown):
        button = "Train" if shown["kind"] == "single" else "Train side by side"
        status_area.info(f"Settings changed since this run: press {button} to retrain.")
    elif shown["kind"] == "single":
        status_area.caption(
            f"Trained {shown['modes'][0]} for {shown_settings.iterations} iterations "
            f"(seed {shown_settings.seed}). ▶ ¼×…2× replays it at that speed, ❚❚ pauses, the slider scrubs."
        )
    else:
        status_area.caption(
            f"Trained {', '.join(shown['modes'])} for {shown_settings.iterations} iterations each "
            f"with seed {shown_settings.seed}. ▶ ¼×…2× replays them together, ❚❚ pauses, the slider scrubs."
        )

st.divider()
st.subheader("Several seeds")
st.markdown(
    "One run is one draw: each dot below is one seed (same settings, different data sample, "
    "initialisation and batches), and the seeds of one mode spread widely. The black diamond is "
    "their mean with its 95 % interval; only a difference larger than that spread means something."
)
study_columns = st.columns([2, 1, 1])
study_modes = study_columns[0].multiselect(
    "modes", list(TOY_MODES), default=list(TOY_MODES), key="toy-study-modes"
)
num_seeds = study_columns[1].number_input("seeds", 2, 50, 5, key="toy-study-seeds")
study_metric = study_columns[2].selectbox(
    "metric", RESULT_METRICS, key="toy-study-metric", format_func=toy_text.METRIC_LABELS.get
)


@st.cache_data(show_spinner=False)
def stored_study(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


if st.button(f"Run {int(num_seeds)} seeds", key="toy-study") and study_modes:
    progress = st.progress(0.0, text="running the study…")
    state["toy-study-result"] = run_study(
        study_modes,
        list(range(int(num_seeds))),
        settings,
        progress=lambda done, total: progress.progress(done / total, text=f"{done}/{total} runs"),
    )
    progress.empty()
study = state.get("toy-study-result")
stored = study is None
if stored:
    study = stored_study(str(STORED_STUDY))
if study is not None:
    st.plotly_chart(
        toy_plots.study_figure(study, study_metric, style),
        key="toy-study-figure",
        config=toy_plots.PLOT_CONFIG,
    )
    st.caption(toy_text.study_caption(study, stored=stored))
    if not presentation:
        st.dataframe(
            pd.DataFrame(toy_text.study_rows(study, RESULT_METRICS)),
            hide_index=True,
            key="toy-study-table",
        )
