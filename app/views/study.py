"""A study, or any folder of runs, from its summaries alone (docs/DESIGN.md §7): the method table,
the claims with their intervals and verdicts (``dml_core.study``), every run's validation curve (a
click opens the run's checkpoint in Inspect), and *Explain generalization*: a train-only metric
against test Recall@1 (``dml_core.study.explain``). Nothing trains; ``?source=LABEL`` picks a
source by its label."""

from __future__ import annotations

import streamlit as st

from app.panels import study as study_panels
from dml_core.study.explain import candidate_metrics, label, sentences

INSPECT_PATH = "inspect-path"  # Inspect's path field: set before switching, it opens that file
HANDLED = "study-opened-click"

st.title("Study")
# The study library's Markdown tables are wider than a 1024 px window: they scroll sideways.
st.markdown(
    "<style>.stMarkdown table{display:block;overflow-x:auto;font-size:0.86rem}</style>",
    unsafe_allow_html=True,
)
sources = study_panels.discover_sources()
if not sources:
    st.info("No study file under studies/ and no folder of runs under the runs folder.")
    st.stop()
labels = [s.label for s in sources]
wanted = st.query_params.get("source")
chosen = st.selectbox(
    "study file or folder of runs",
    labels,
    index=labels.index(wanted) if wanted in labels else 0,
    key="study-source",
)
st.query_params["source"] = chosen
source = sources[labels.index(chosen)]
try:
    view = study_panels.load_view(source.kind, source.path, study_panels.signature(source))
except (ValueError, FileNotFoundError) as error:  # StudyError is a ValueError
    st.error(str(error))
    st.stop()

st.subheader(view.title)
if view.kind == "study":
    st.markdown(view.markdown)
else:
    st.caption(view.note)
    st.dataframe(view.table, hide_index=True, key="study-method-table")

st.subheader("Every run")
if not view.curves:
    st.info("No finished run yet.")
    st.stop()
st.caption(
    "One line per run; the large marker is the epoch every value above is taken at. Click a "
    "point of a run whose folder is here to open its checkpoint in Inspect."
)
event = st.plotly_chart(
    study_panels.curves_figure(view),
    key="study-curves",
    on_select="rerun",
    selection_mode="points",
)
clicked = [p for p in (event.selection.points if event else []) if p.get("customdata")]
if clicked:
    checkpoint, method, seed = clicked[0]["customdata"][:3]
    if not checkpoint:
        st.warning(f"{method} seed {seed}: its run folder is not on this machine (summary only).")
    elif st.session_state.get(HANDLED) != checkpoint:
        st.session_state[HANDLED] = checkpoint
        st.session_state[INSPECT_PATH] = checkpoint
        st.switch_page("views/inspect.py")
else:
    st.session_state.pop(HANDLED, None)

st.subheader("Explain generalization")
metrics = candidate_metrics(view.points)
if not metrics:
    st.info(
        "No train-only metric is recorded together with test Recall@1 by runs of at least 3 "
        "methods; explaining needs 3."
    )
    st.stop()
metric = st.selectbox("train-only metric", metrics, format_func=label, key="study-explain-metric")
try:
    explanation = study_panels.load_explanation(
        source.kind, source.path, study_panels.signature(source), metric
    )
except ValueError as error:
    st.info(str(error))
    st.stop()
st.markdown("\n".join(f"- {line}" for line in sentences(explanation)))
st.plotly_chart(study_panels.scatter_figure(explanation), key="study-explain-scatter")
st.dataframe(
    study_panels.correlation_table(explanation), hide_index=True, key="study-explain-correlations"
)
st.caption(
    "Intervals: 95 % percentile bootstrap, 4,000 resamples of the seeds, one draw shared by every "
    "method (seeds run by only some methods are resampled among themselves). Permutation p: test "
    "Recall@1 means permuted across methods. Paper: Roth et al. 2020, Fig. 3, CUB200."
)
st.markdown(
    f"**Leave one method out**: {explanation.leave_one_out.exact} of {len(explanation.means)} "
    f"exact, {explanation.leave_one_out.within_one} within one place (a random ranking: "
    f"{explanation.leave_one_out.chance_exact:.1f} and "
    f"{explanation.leave_one_out.chance_within_one:.1f})."
)
st.dataframe(
    study_panels.leave_one_out_table(explanation), hide_index=True, key="study-explain-loo"
)
