"""Streamlit pieces of the Inspect page, each drawing one opened split (:class:`app.sources.Opened`,
a checkpoint's or an embedding file's alike): the clickable projection, the retrieval explorer with
a strict query box and ranked worst queries, the confusion view, the stored history, the export
button, and the page's caption. Numbers come from :mod:`app.analysis`, figures from
:mod:`app.figures`, files from :mod:`app.sources`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app import analysis, item_images, sources
from app.figures.curves import history_figure
from app.figures.images import confusion_html, retrieval_grid_html
from app.format import metric_label, metric_order
from app.panels import common
from app.settings import CURVE_METRICS
from dml_core.interop import FORMATS

NEIGHBORS_SHOWN = 8
WORST_SHOWN = 4
CONFUSION_K = 5
CONFUSED_PAIRS = 8


def _class_namer(labels: np.ndarray, class_names: Sequence[str]) -> Callable[[int], str]:
    """``item index → class name``."""
    return lambda index: analysis.class_name(class_names, int(labels[int(index)]))


# --- retrieval, worst queries, confusion -------------------------------------------------------


def retrieval_explorer(
    report: analysis.RetrievalReport,
    opened: sources.Opened,
    image_uri: Callable[[int], str] | None,
    *,
    key: str,
) -> None:
    """Typed or random queries with their top-k, then the worst queries (ranked as the page
    says)."""
    labels, class_names = opened.labels, opened.class_names
    count = len(labels)
    columns = st.columns([1, 2, 1])
    k = columns[0].slider("neighbours", 1, report.neighbor_indices.shape[1], 5, key=f"{key}-k")
    typed = columns[1].text_input(
        "query indices",
        key=f"{key}-queries",
        placeholder=f"e.g. 5 7 or 5, 7 (0 … {count - 1})",
    )
    seed = columns[2].number_input("random seed", 0, 10_000, 0, key=f"{key}-seed")
    name = lambda c: analysis.class_name(class_names, c)  # noqa: E731
    item_class = lambda i: int(labels[i])  # noqa: E731
    try:
        queries = analysis.parse_query_indices(typed, count)
    except ValueError as error:
        st.error(
            f"Query indices: {error}. Type whole numbers 0 … {count - 1}, "
            "separated by spaces or commas."
        )
        queries = None
    if queries is not None:
        if not queries:
            querying = np.flatnonzero(report.neighbor_indices[:, :1].max(axis=1, initial=-1) >= 0)
            among = None if len(querying) == count else querying  # the protocol's queries
            queries = analysis.random_queries(count, 4, int(seed), among)
            st.caption(f"{len(queries)} random queries (seed {int(seed)}); type indices to pick.")
        rows = analysis.retrieval_rows(report, labels, queries, k)
        st.html(retrieval_grid_html(rows, image_uri, name, item_class=item_class))

    st.markdown("**Worst queries**")
    nearest = common.nearest_other(opened)
    how_many = st.number_input(
        "how many", 1, 50, WORST_SHOWN, key=f"{key}-worst-count", label_visibility="collapsed"
    )
    ap = report.average_precision_at_r
    tied = int(np.sum(ap == np.nanmin(ap))) if np.isfinite(ap).any() else 0
    st.caption(
        f"Ranked by AP@R, lowest first ({tied} queries share the lowest AP@R, "
        f"{np.nanmin(ap):.2f}); ties broken by the gap d⁺ − d⁻ between the distance to the "
        "nearest same-class item and to the nearest other-class item, largest (worst) first."
    )
    worst = analysis.worst_queries(ap, int(how_many), nearest.gap)
    st.html(
        retrieval_grid_html(
            analysis.retrieval_rows(report, labels, worst, k),
            image_uri,
            name,
            caption=lambda row: (
                f"#{row.query} AP@R {ap[row.query]:.2f} gap {nearest.gap[row.query]:+.2f}"
            ),
            item_class=item_class,
        )
    )


def confusion_panel(
    report: analysis.RetrievalReport,
    opened: sources.Opened,
    image_uri: Callable[[int], str] | None,
    *,
    key: str,
) -> None:
    """The most confused (query class → retrieved class) pairs among each query's top-k."""
    labels, class_names = opened.labels, opened.class_names
    k = min(CONFUSION_K, report.neighbor_indices.shape[1])
    pairs = analysis.confused_pairs(labels, report.neighbor_indices, k, top=CONFUSED_PAIRS)
    if not pairs:
        st.caption(f"No query retrieves another class among its {k} nearest neighbours.")
        return
    name = lambda c: analysis.class_name(class_names, c)  # noqa: E731
    st.caption(
        f"Which classes are retrieved for which: counts of other-class items among each "
        f"query's {k} nearest neighbours, most frequent first, with one example each."
    )
    left, right = st.columns([2, 3])
    left.dataframe(
        pd.DataFrame(
            [
                {
                    "query class": name(p.query_class),
                    "retrieved class": name(p.retrieved_class),
                    "times": p.count,
                    "share of top-k": p.share,
                }
                for p in pairs
            ]
        ),
        hide_index=True,
        key=f"{key}-confusion",
        column_config={"share of top-k": st.column_config.NumberColumn(format="percent")},
    )
    with right:
        st.html(confusion_html(pairs, image_uri, name))


# --- stored history, metrics, export -----------------------------------------------------------


def history_panel(metadata: Mapping[str, Any], *, key: str) -> None:
    """The best result as a table, one small plot per stored metric, the history transposed."""
    history = list(metadata.get("history") or [])
    best = analysis.best_result_rows(metadata.get("best"))
    if best:
        st.dataframe(pd.DataFrame(best), hide_index=True, key=f"{key}-best", width=360)
    if not history:
        return
    keys = [key_ for key_, _ in CURVE_METRICS if key_ in history[-1]]
    st.plotly_chart(history_figure(history, keys), key=f"{key}-history")
    with st.expander("stored metrics per evaluation"):
        st.dataframe(
            pd.DataFrame(analysis.history_rows(history)),
            hide_index=True,
            key=f"{key}-history-table",
            column_config={"metric": st.column_config.TextColumn(width="medium", pinned=True)},
        )


def metrics_table(columns: Mapping[str, Mapping[str, float]], *, key: str) -> None:
    """Metric rows in :func:`app.format.metric_order` (counts last, readable), one column per
    split."""
    keys = metric_order({k for values in columns.values() for k in values})
    frame = pd.DataFrame({name: [values.get(k) for k in keys] for name, values in columns.items()})
    frame.index = [metric_label(k) for k in keys]
    st.dataframe(frame, key=key, column_config={"_index": st.column_config.TextColumn("metric")})


def export_panel(opened: sources.Opened, *, key: str) -> None:
    """An Export button: the TensorBoard projector files, parquet or CSV of the shown split,
    zipped for download (what ``python -m dml_core export`` writes)."""
    columns = st.columns([2, 1, 2])
    fmt = columns[0].selectbox(
        "export format",
        FORMATS,
        key=f"{key}-format",
        help="tensorboard: tensors.tsv, metadata.tsv, sprite.png, projector_config.pbtxt; "
        "parquet/csv: one row per item with embedding, PCA, AP@R and hit@1.",
    )
    ready_key = f"{key}-zip"
    stamp = (str(opened.source.path), opened.split, fmt)
    if columns[1].button("Export", key=f"{key}-build"):
        with st.spinner("Writing the export…"):
            thumbnail = item_images.thumbnail_getter(opened)
            st.session_state[ready_key] = (stamp, sources.export_zip(opened, fmt, thumbnail))
    ready = st.session_state.get(ready_key)
    if ready is not None and ready[0] == stamp:
        columns[2].download_button(
            f"Download {fmt} (.zip)",
            ready[1],
            file_name=f"{opened.source.path.stem}-{opened.split}-{fmt}.zip",
            mime="application/zip",
            key=f"{key}-download",
        )


def describe(opened: sources.Opened) -> str:
    """The page's first caption: where the split comes from and what it holds."""
    if opened.metadata is not None:
        return describe_checkpoint(opened.label, opened.metadata)
    record = opened.record
    return (
        f"{opened.label} · embedding file · {len(record)} items · {record.dim} dimensions · "
        f"{len(record.class_names)} classes · split {opened.split}"
    )


def describe_checkpoint(label: str, metadata: Mapping[str, Any]) -> str:
    config = metadata["config"]
    return (
        f"{label} · {config['dataset']} · {config['arch']} · loss {config['loss']} · miner "
        f"{config['miner']} · ρ {config['rho']} · epoch {metadata.get('epoch')}"
    )


def not_evaluated(missing: sources.NotEvaluated) -> None:
    """A checkpoint with no stored evaluation and no dataset here: its header's history only."""
    config = missing.metadata["config"]
    st.caption(describe_checkpoint(missing.source.label, missing.metadata))
    st.warning(
        f"This checkpoint carries no stored evaluation and its dataset {config['dataset']!r} is not "
        f"available on this machine, so only its metadata and metric history are shown. Run "
        f"`python -m dml_core project {missing.source.path}` where the data is to store the "
        f"evaluation in it.\n\n{missing}",
        icon="⚠️",
    )
    history_panel(missing.metadata, key="inspect")
    with st.expander("configuration"):
        st.json(config)
