"""Streamlit pieces of the Compare page, for opened splits of any kind (:class:`app.sources.Opened`):
the metric table (headline metrics first, Δ visible), the not-the-same-items warning, the aligned
layouts, per-class Δ and the queries one side gets right and the other wrong. Numbers come from
:mod:`app.analysis`, figures from :mod:`app.figures`."""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from app import analysis, sources
from app.cache import cache_key, file_version
from app.figures.density import per_class_delta_figure
from app.figures.images import retrieval_grid_html
from app.figures.labels import wrap_title
from app.figures.projection import common_extent
from app.format import COUNT_METRICS, metric_order, number_column, rounded
from app.panels import common
from app.panels import projection as projection_panels
from app.projection import is_cached, procrustes_align, umap_projection

DISAGREEMENTS_SHOWN = 5
MEASURES = {"Recall@1 (hit@1)": "hit", "AP@R": "ap"}
PER_CLASS_SPLIT = (5, 6)
"""Chart : table widths of the per-class row; the table side is about 300 px at 1024 px."""
PER_CLASS_WIDTHS = {"class": 76, "Δ": 66, "A": 56, "B": 56, "n": 40}
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
        for k in metric_order({k for table in tables.values() for k in table})
        if k.rsplit("/", 1)[-1] not in COUNT_METRICS
    ]
    frame = pd.DataFrame(analysis.metric_comparison(tables, keys))
    ordered = ["metric", *names, *(f"Δ {n}" for n in names[1:])]
    config: dict[str, object] = {"metric": st.column_config.TextColumn("metric", pinned=True)}
    for name in names:
        config[name] = number_column(tag[name], help=name)
    for name in names[1:]:
        config[f"Δ {name}"] = number_column(
            f"Δ {tag[name]}−{tag[names[0]]}", help=f"{name} − {names[0]}", signed=True
        )
    st.caption(" · ".join(f"**{tag[name]}** = {name}" for name in names))
    st.dataframe(frame[ordered], hide_index=True, key=key, column_config=config)


def side(opened: sources.Opened, report: analysis.RetrievalReport) -> Side:
    """One compared split, from the opened source and its report (:func:`app.panels.common.analysed`)."""
    return Side(
        opened.label,
        opened.labels,
        report,
        opened.class_names,
        opened.signature,
        common.image_uri(opened),
    )


def per_item_warning(problem: str) -> None:
    """Why per-item comparisons are off (:func:`app.sources.per_item_problem`)."""
    st.warning(
        f"Not the same items: {problem}. Metrics are compared above, but the common layout, "
        "per-class Δ and per-query comparisons are turned off.",
        icon="⚠️",
    )


def aligned_layouts(
    shown: Mapping[str, sources.Opened], method: str, same_items: bool
) -> dict[str, tuple[np.ndarray, str]]:
    """Each split's layout and what it is. Splits of the same items share one frame: each
    PCA rotated onto the first's, each UMAP fitted from the first's layout (the first's stored
    UMAP when it has one; fits cached on disk, PCA while they compute). Other splits get their
    own layout (:func:`app.panels.projection.layout`)."""
    opened = list(shown.values())
    reference = opened[0]
    if not same_items:
        return {label: projection_panels.layout(o, method) for label, o in shown.items()}

    def rotated(title: str) -> dict[str, tuple[np.ndarray, str]]:
        base = projection_panels.pca_layout(reference)
        return {
            label: (procrustes_align(projection_panels.pca_layout(o), base), title)
            for label, o in shown.items()
        }

    if method == "PCA":
        return rotated("PCA, rotated onto #1")
    first = reference.umap
    pending: list[str] = []
    if first is None:
        first = umap_projection(projection_panels.umap_key(reference), reference.embeddings)
        pending += [] if first is not None else [projection_panels.umap_key(reference)]
    layouts: dict[str, np.ndarray | None] = {next(iter(shown)): first}
    path, mtime_ns, _ = file_version(reference.source.path)
    anchor = f"{path}|{mtime_ns}"
    for label, other in list(shown.items())[1:]:
        layouts[label] = None
        if first is not None:
            key = cache_key(other.source.path, other.split, "umap-aligned-to", anchor)
            layouts[label] = umap_projection(key, other.embeddings, init=first)
            pending += [] if layouts[label] is not None else [key]
    if pending or first is None:
        common.rerun_when_ready(
            lambda: all(is_cached(key) for key in pending),
            "The aligned UMAPs are computing; PCA (rotated onto the first) until then.",
        )
        return rotated("PCA (UMAP computing)")
    return {label: (layout, "UMAP from #1's layout") for label, layout in layouts.items()}  # type: ignore[misc]


def _values(side: Side, measure: str) -> np.ndarray:
    if measure == "hit":
        return analysis.hit_at_1(side.report, side.labels)
    return side.report.average_precision_at_r


def per_item_views(sides: Sequence[Side], *, key: str) -> None:
    """Per-class Δ and the A-right/B-wrong queries of the first two sides (of the same items)."""
    if len(sides) < 2:
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
    left.plotly_chart(per_class_delta_figure(rows, label), key=f"{key}-chart")
    table = pd.DataFrame(rows)[["class", "Δ (B − A)", "A", "B", "queries"]]
    for column in ("Δ (B − A)", "A", "B"):
        table[column] = table[column].map(rounded)
    right.dataframe(
        table,
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
        "Δ (B − A)": number_column(
            "Δ", width=widths["Δ"], help=f"B − A: {measure} of B minus that of A", signed=True
        ),
        "A": number_column("A", width=widths["A"], help=f"mean {measure} under A = {name_a}"),
        "B": number_column("B", width=widths["B"], help=f"mean {measure} under B = {name_b}"),
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
                        retrieval_grid_html(
                            row,
                            side.image_uri,
                            lambda c, names=side.class_names: analysis.class_name(names, c),
                            caption=lambda r, letter=letter: f"{letter} · #{r.query}",
                            item_class=lambda i, labels=side.labels: int(labels[i]),
                        )
                    )


HIGHLIGHT = "compare-highlight"


def _highlight(rows: list[int]) -> None:
    if rows and rows != st.session_state.get(HIGHLIGHT):
        st.session_state[HIGHLIGHT] = rows


def _clear_highlight() -> None:
    st.session_state[HIGHLIGHT] = []
    # New chart widgets, so selecting the same points again is news to them.
    st.session_state["compare-cleared"] = st.session_state.get("compare-cleared", 0) + 1


@st.fragment
def linked_projections(
    shown: Mapping[str, sources.Opened],
    layouts: Mapping[str, tuple[np.ndarray, str]],
    same_items: bool,
) -> None:
    """The projections side by side (one shared frame when they hold the same items); a click,
    box or lasso in any highlights those items in all of them (a single one as a star). A
    fragment: selecting or clearing reruns only these plots and the preview under them."""
    labels = list(shown)
    highlight = st.session_state.get(HIGHLIGHT, []) if same_items else []
    title_width = max(16, 64 // len(labels))  # characters that fit one column's width at 1024 px
    names = {label: wrap_title(label, title_width) for label in labels}
    name_lines = max(name.count("<br>") for name in names.values())
    # Aligned layouts share one frame; names padded to one line count keep the frames level.
    extent = common_extent([layouts[label][0] for label in labels]) if same_items else None
    for position, (column, label) in enumerate(zip(st.columns(len(labels)), labels, strict=True)):
        coordinates, what = layouts[label]
        padding = "<br> " * (name_lines - names[label].count("<br>"))
        with column:
            projection_panels.scatter(
                coordinates,
                shown[label].labels,
                shown[label].class_names,
                title=f"{names[label]}{padding}<br><sub>{what}</sub>",
                key=f"compare-projection-{position}-{st.session_state.get('compare-cleared', 0)}",
                highlight=highlight,
                extent=extent,
                on_select=_highlight if same_items else None,
            )
    if not same_items:
        return
    if not highlight:
        st.caption(
            "Select points (click, box or lasso) in any projection to highlight them in all."
        )
        return
    count = len(highlight)
    st.caption(f"{count} item{'s' if count != 1 else ''} highlighted in every projection.")
    st.button("clear the highlight", key="compare-clear", on_click=_clear_highlight)
    first = shown[labels[0]]
    image_uri = common.image_uri(first)
    if image_uri is not None:
        common.selection_preview(highlight, first.labels, first.class_names, image_uri)
