"""Toy lab: the paper's diagonal-lines experiment, trained live in-process through the toy API.

Train classes lie along diagonal lines; the zero-shot test classes differ only along the other
direction. The base embedding collapses onto the direction the train labels need and the test
classes overlap; the paper's regularized run keeps a second direction alive (Roth et al. 2020).
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import streamlit as st

from app import analysis, figures
from toy import TOY_MODES, ToySettings, run_study, toy_data, train_toy

ANIMATION_EVERY = 10
STUDY_METRICS = ("test_recall@1", "train_recall@1", "rho@1", "pi_ratio")
SAMPLERS = {"random (as published)": "random", "class-balanced": "class_random"}

st.title("Toy lab: diagonal lines")
st.markdown(
    "**What to point at.** Train with mode *base*: the embedding squeezes the classes onto the "
    "one direction the train labels need, one singular value takes nearly all the mass, and the "
    "test classes (which differ along the other direction) pile up. Switch to *paper* (the "
    "published regularized run): the second singular value grows and the spectrum flattens. Then "
    "*no_pull*: dropping the pull term alone flattens it just as much, while *rho* (push triplets "
    "with probability p_ρ, pull term kept) barely moves it. Finally run 20 seeds: test Recall@1 "
    "varies a lot from seed to seed and no mode changes it measurably on this toy, so one seed "
    "proves nothing (measured figures: README, 'The diagonal-lines toy')."
)

with st.sidebar:
    st.header("Toy settings")
    mode = st.selectbox("mode", list(TOY_MODES), key="toy-mode")
    push_probability = st.slider(
        "push probability p_ρ", 0.0, 1.0, 0.2, 0.05, key="toy-push", help="used by mode rho"
    )
    sampler_label = st.radio("batch sampler", list(SAMPLERS), key="toy-sampler")
    margin = st.slider("margin", 0.05, 1.0, 0.1, 0.05, key="toy-margin")
    iterations = st.slider("iterations", 20, 1000, 200, 20, key="toy-iterations")
    lr = st.select_slider("learning rate", [0.003, 0.01, 0.03, 0.1, 0.3], 0.03, key="toy-lr")
    seed = st.number_input("seed", 0, 10_000, 0, key="toy-seed")
    embed_dim = st.radio("embedding", [2, 3], format_func=lambda d: f"{d}-D", key="toy-dim")

settings = ToySettings(
    mode=mode,
    push_probability=push_probability,
    sampler=SAMPLERS[sampler_label],
    margin=margin,
    lr=lr,
    iterations=iterations,
    seed=int(seed),
    embed_dim=int(embed_dim),
)

data_column, info_column = st.columns([3, 2])
data_column.plotly_chart(figures.toy_data_figure(toy_data(int(seed))), key="toy-data")
info_column.markdown(
    "Left: the train classes; right: the unseen test classes. Both panels are the raw 2-D inputs; "
    "the network maps them to the unit circle (or sphere) below."
)

train_clicked = st.button("Train", type="primary", key="toy-train")
embedding_slot, loss_slot, spectrum_slot = st.columns([2, 2, 1])
embedding_area, loss_area, spectrum_area = (
    embedding_slot.empty(),
    loss_slot.empty(),
    spectrum_slot.empty(),
)
status_area = st.empty()


def draw(frame: object, steps: list[int], losses: list[float], final: bool) -> None:
    data = toy_data(settings.seed)
    suffix = "" if final else "-live"
    embedding_area.plotly_chart(
        figures.toy_embedding_figure(
            frame.train_embeddings,
            data["train_labels"],
            frame.test_embeddings,
            data["test_labels"],
            title=f"embedding at step {frame.step}",
        ),
        key=f"toy-embedding{suffix}-{frame.step}",
    )
    loss_area.plotly_chart(figures.loss_figure(steps, losses), key=f"toy-loss{suffix}-{frame.step}")
    spectrum_area.plotly_chart(
        figures.spectrum_bars(frame.spectrum), key=f"toy-spectrum{suffix}-{frame.step}"
    )


if train_clicked:
    steps: list[int] = []
    losses: list[float] = []
    for frame in train_toy(settings, every=ANIMATION_EVERY):
        steps.append(frame.step)
        losses.append(float(frame.loss))
        if frame.done:
            st.session_state["toy-last"] = (dataclasses.asdict(settings), frame, steps, losses)
        else:
            draw(frame, steps, losses, final=False)

last = st.session_state.get("toy-last")
if last is not None:
    trained_settings, frame, steps, losses = last
    draw(frame, steps, losses, final=True)
    if trained_settings != dataclasses.asdict(settings):
        status_area.info("Settings changed since this run: press Train to retrain.")
    else:
        status_area.caption(f"Trained {trained_settings['mode']} for {frame.step} iterations.")
else:
    status_area.info("Press Train to watch the embedding form.")

st.divider()
st.subheader("Several seeds")
study_columns = st.columns([2, 1, 1])
study_modes = study_columns[0].multiselect(
    "modes", list(TOY_MODES), default=list(TOY_MODES), key="toy-study-modes"
)
num_seeds = study_columns[1].number_input("seeds", 2, 50, 5, key="toy-study-seeds")
study_metric = study_columns[2].selectbox("metric", STUDY_METRICS, key="toy-study-metric")


if st.button(f"Run {int(num_seeds)} seeds", key="toy-study") and study_modes:
    progress = st.progress(0.0, text="running the study…")
    st.session_state["toy-study-result"] = run_study(
        study_modes,
        list(range(int(num_seeds))),
        settings,
        progress=lambda done, total: progress.progress(done / total, text=f"{done}/{total} runs"),
    )
    progress.empty()
study = st.session_state.get("toy-study-result")
if study is not None:
    summaries = {mode: data["summary"][study_metric] for mode, data in study["modes"].items()}
    st.plotly_chart(figures.study_figure(summaries, study_metric), key="toy-study-figure")
    st.dataframe(
        pd.DataFrame(analysis.study_rows(study, STUDY_METRICS)),
        hide_index=True,
        key="toy-study-table",
    )
    st.caption(f"{len(study['seeds'])} seeds; {study['interval']}.")
