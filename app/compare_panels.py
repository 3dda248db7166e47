"""Streamlit pieces of the Compare page: the metric table (headline metrics first, Δ visible),
the differing-datasets warning, per-class Δ, the queries one side gets right and the other wrong,
and the whole comparison when an embedding file is among the picks. Numbers come from
:mod:`app.analysis`, figures from :mod:`app.figures`."""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from app import analysis, figures, inspect_panels, panels, sources
from app.projection import projection_key
from dml_core.metrics import singular_value_spectrum
from dml_core.metrics.retrieval import DEFAULT_RECALL_KS

DISAGREEMENTS_SHOWN = 5
MEASURES = {"Recall@1 (hit@1)": "hit", "AP@R": "ap"}
PER_CLASS_SPLIT = (5, 6)
"""Chart : table widths of the per-class row; the table side is about 300 px at 1024 px."""
PER_CLASS_WIDTHS = {"class": 84, "Δ": 62, "A": 54, "B": 54, "n": 40}
"""Pixel widths of the per-class table's columns: 294 in all, under the table side at 1024 px."""


@dataclass(frozen=True)
class Side:
    """One compared split: labels, its retrieval report, class names, item signature, pictures."""

    name: str
    labels: np.ndarray
    report: analysis.RetrievalReport
    class_names: Sequence[str]
    signature: str
    image_uri: Callable[[int], str] | None


def letters(names: Sequence[str]) -> dict[str, str]:
    """``name → A, B, C…`` in order."""
    return {name: string.ascii_uppercase[i % 26] for i, name in enumerate(names)}


def metrics_panel(tables: Mapping[str, Mapping[str, float]], *, key: str) -> None:
    """Metric rows, headline metrics first (Recall@1, MAP@R, …), counts left out; columns are
    shown as A, B, … and Δ B−A (the full names are in the caption), so Δ is never cut off."""
    names = list(tables)
    tag = letters(names)
    keys = [
        k
        for k in analysis.metric_order({k for table in tables.values() for k in table})
        if k.rsplit("/", 1)[-1] not in analysis.COUNT_METRICS
    ]
    frame = pd.DataFrame(analysis.metric_comparison(tables, keys))
    ordered = ["metric", *names, *(f"Δ {n}" for n in names[1:])]
    config: dict[str, object] = {"metric": st.column_config.TextColumn("metric", pinned=True)}
    for name in names:
        config[name] = st.column_config.NumberColumn(tag[name], help=name, format="%.4f")
    for name in names[1:]:
        config[f"Δ {name}"] = st.column_config.NumberColumn(
            f"Δ {tag[name]}−{tag[names[0]]}", help=f"{name} − {names[0]}", format="%+.4f"
        )
    st.caption(" · ".join(f"**{tag[name]}** = {name}" for name in names))
    st.dataframe(frame[ordered], hide_index=True, key=key, column_config=config)


def per_item_problem(sides: Sequence[Side]) -> str | None:
    """:func:`app.analysis.per_item_problem` over the sides; shows the warning when there is one."""
    problem = analysis.per_item_problem(
        [s.signature for s in sides], [s.labels for s in sides], [s.name for s in sides]
    )
    if problem is not None:
        st.warning(
            f"Not the same items: {problem}. Metrics are compared above, but per-class Δ and "
            "per-query comparisons are turned off.",
            icon="⚠️",
        )
    return problem


def _values(side: Side, measure: str) -> np.ndarray:
    if measure == "hit":
        return analysis.hit_at_1(side.report, side.labels)
    return side.report.average_precision_at_r


def per_item_views(sides: Sequence[Side], *, key: str) -> None:
    """Per-class Δ and the A-right/B-wrong queries of the first two sides (after the check)."""
    if len(sides) < 2 or per_item_problem(sides) is not None:
        return
    if len(sides) > 2:
        st.caption(f"Per-item views compare the first two: {sides[0].name} and {sides[1].name}.")
    a, b = sides[0], sides[1]
    st.subheader("Per-class Δ (B − A)")
    per_class_panel(a, b, key=f"{key}-per-class")
    st.subheader("Where they disagree")
    disagreement_panel(a, b, key=f"{key}-disagree")


def per_class_panel(a: Side, b: Side, *, key: str) -> None:
    """Which classes got better or worse from A to B, by the mean hit@1 or AP@R of their queries."""
    label = st.radio("measure", list(MEASURES), horizontal=True, key=f"{key}-measure")
    measure = MEASURES[label]
    rows = analysis.per_class_delta(
        a.labels, _values(a, measure), _values(b, measure), a.class_names
    )
    better = sum(row["Δ (B − A)"] > 0 for row in rows)
    worse = sum(row["Δ (B − A)"] < 0 for row in rows)
    st.caption(
        f"A = {a.name}, B = {b.name}. {better} classes got better, {worse} worse, "
        f"{len(rows) - better - worse} unchanged (mean {label} of each class's queries)."
    )
    left, right = st.columns(PER_CLASS_SPLIT)
    left.plotly_chart(figures.per_class_delta_figure(rows, label), key=f"{key}-chart")
    right.dataframe(
        pd.DataFrame(rows)[["class", "Δ (B − A)", "A", "B", "queries"]],
        hide_index=True,
        key=f"{key}-table",
        column_config=per_class_columns(a.name, b.name, label),
    )


def per_class_columns(name_a: str, name_b: str, measure: str) -> dict[str, object]:
    """Short headers and fixed pixel widths (``PER_CLASS_WIDTHS``) so the five columns fit half
    of the page at 1024 px; the full meaning of each is in its header's help. A class name
    longer than its column is cut; the whole name shows in the chart and when the cell is
    opened (double click)."""
    widths = PER_CLASS_WIDTHS
    return {
        "class": st.column_config.TextColumn("class", width=widths["class"]),
        "Δ (B − A)": st.column_config.NumberColumn(
            "Δ", width=widths["Δ"], help=f"B − A: {measure} of B minus that of A", format="%+.3f"
        ),
        "A": st.column_config.NumberColumn(
            "A", width=widths["A"], help=f"mean {measure} under A = {name_a}", format="%.3f"
        ),
        "B": st.column_config.NumberColumn(
            "B", width=widths["B"], help=f"mean {measure} under B = {name_b}", format="%.3f"
        ),
        "queries": st.column_config.NumberColumn(
            "n",
            width=widths["n"],
            help="queries of the class with a value under both A and B (lone ones left out)",
        ),
    }


def disagreement_panel(a: Side, b: Side, *, key: str) -> None:
    """Queries whose nearest neighbour is right under A and wrong under B, and vice versa, each
    with both retrieval rows."""
    only_a, only_b = analysis.disagreements(
        analysis.hit_at_1(a.report, a.labels), analysis.hit_at_1(b.report, b.labels)
    )
    k = st.slider("neighbours", 1, min(a.report.neighbor_indices.shape[1], 8), 5, key=f"{key}-k")
    tabs = st.tabs([f"A right, B wrong ({len(only_a)})", f"B right, A wrong ({len(only_b)})"])
    for tab, queries, which in zip(tabs, (only_a, only_b), ("a", "b"), strict=True):
        with tab:
            if not queries:
                st.caption("None.")
                continue
            start = st.number_input(
                f"first shown (of {len(queries)})",
                0,
                max(0, len(queries) - 1),
                0,
                step=DISAGREEMENTS_SHOWN,
                key=f"{key}-{which}-start",
            )
            shown = queries[int(start) : int(start) + DISAGREEMENTS_SHOWN]
            for query in shown:
                st.markdown(
                    f"**Query #{query}** · {analysis.class_name(a.class_names, int(a.labels[query]))}"
                )
                for letter, side in (("A", a), ("B", b)):
                    row = analysis.retrieval_rows(side.report, side.labels, [query], k)
                    st.html(
                        figures.retrieval_grid_html(
                            row,
                            side.image_uri,
                            lambda c, names=side.class_names: analysis.class_name(names, c),
                            caption=lambda r, letter=letter: f"{letter} · #{r.query}",
                            item_class=lambda i, labels=side.labels: int(labels[i]),
                        )
                    )


def checkpoint_side(
    name: str,
    config: Mapping[str, object],
    labels: np.ndarray,
    report: analysis.RetrievalReport,
    class_names: Sequence[str],
    image_uri: Callable[[int], str] | None,
    split: str = "test",
) -> Side:
    """A side from what the Compare page already computed for a checkpoint."""
    return Side(
        name,
        np.asarray(labels),
        report,
        list(class_names),
        sources.checkpoint_signature(dict(config), split),
        image_uri,
    )


def compare_sources(picked: Sequence[sources.Source], *, key: str = "compare-files") -> None:
    """The whole comparison for any mix of checkpoints and embedding files (their test split, or
    a file's only split): metrics, spectra, projections, per-class Δ, disagreements."""
    opened: dict[str, sources.Opened] = {}
    thumbnails = {}
    for source in picked:
        try:
            item = inspect_panels.opened_split(
                str(source.path), source.path.stat().st_mtime_ns, source.kind, "test"
            )
            thumbnails[source.label] = sources.thumbnail_getter(source, item)
        except (ValueError, OSError, KeyError, TypeError) as error:
            st.error(f"{source.label}: {error}")
            st.stop()
        opened[source.label] = item
    tables = {}
    sides = []
    for source in picked:
        item = opened[source.label]
        keep = min(analysis.RETRIEVAL_COLUMNS, len(item.labels) - 1)
        ks = tuple(k for k in DEFAULT_RECALL_KS if k < len(item.labels))
        metrics, report = panels.split_analysis(item.embeddings, item.labels, ks, keep)
        tables[source.label] = {f"{item.split}/{k}": v for k, v in metrics.items()}
        sides.append(
            Side(
                source.label,
                item.labels,
                report,
                item.class_names,
                item.signature,
                inspect_panels.image_uri_getter(thumbnails[source.label]),
            )
        )
    st.subheader("Metrics (Δ against the first)")
    metrics_panel(tables, key=f"{key}-metrics")
    per_item_problem(sides)
    st.subheader("Spectra")
    panels.spectrum_panel(
        {label: singular_value_spectrum(item.embeddings) for label, item in opened.items()},
        key=f"{key}-spectrum",
    )
    st.subheader("Projections")
    columns = st.columns(len(picked))
    for column, source, side in zip(columns, picked, sides, strict=True):
        item = opened[source.label]
        with column:
            panels.projection_panel(
                projection_key(source.path, item.split, "umap"),
                item.embeddings,
                item.labels,
                item.class_names,
                side.image_uri,
                key=f"{key}-projection-{source.label}",
                title=source.label,
            )
    if (
        analysis.per_item_problem(
            [s.signature for s in sides], [s.labels for s in sides], [s.name for s in sides]
        )
        is None
    ):
        per_item_views(sides, key=key)
