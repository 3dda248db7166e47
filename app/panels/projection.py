"""Streamlit pieces for projections: the layout of an opened split (stored, else PCA at once and
UMAP in the background), a scatter that reports its selection and highlights items, and the
snapshot player of a run (:mod:`app.panels.player`)."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import streamlit as st

from app import analysis
from app.figures.images import retrieval_grid_html, thumbnails_html
from app.figures.projection import (
    COLOR_MODES,
    SELECTED_STAR,
    inspect_projection_figure,
    projection_figure,
)
from app.panels import common, player
from app.projection import background, is_cached, pca_2d, projection_key, umap_projection
from app.settings import umap_enabled
from app.sources import Opened

NEIGHBORS_SHOWN = 8
PLOT_CONFIG = {"displaylogo": False}


def layout(opened: Opened, method: str) -> tuple[np.ndarray, str]:
    """The 2-D layout of ``opened`` for ``method`` (``UMAP`` or ``PCA``) and what it is: the stored
    projection when the source has one (nothing recomputed), else PCA at once and UMAP from the
    background thread (cached on disk under the file's identity; PCA while it computes)."""
    pca = pca_layout(opened)
    if method != "UMAP":
        return pca, "PCA"
    if opened.umap is not None:
        return opened.umap, "UMAP"
    if not umap_enabled():
        st.caption("UMAP is turned off (DML_EXPLORER_UMAP=off): PCA.")
        return pca, "PCA"
    key = umap_key(opened)
    computed = umap_projection(key, opened.embeddings)
    if computed is not None:
        return computed, "UMAP"
    common.rerun_when_ready(
        lambda: is_cached(key), "UMAP is computing in the background; PCA until then."
    )
    return pca, "PCA (UMAP computing)"


def pca_layout(opened: Opened) -> np.ndarray:
    """The stored PCA, else the PCA of the embeddings."""
    return opened.pca if opened.pca is not None else pca_2d(opened.embeddings)


def umap_key(opened: Opened) -> str:
    """The disk-cache key of the UMAP the app fits for ``opened`` (its file's identity)."""
    return projection_key(opened.source.path, opened.split, "umap-interactive")


def placeholder_uri(row: int) -> str:
    """An SVG tile naming the item, where no image can be shown."""
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
        '<rect width="64" height="64" fill="#eee"/><text x="32" y="36" font-size="11" '
        f'text-anchor="middle" fill="#555">#{html.escape(str(row))}</text></svg>'
    )
    return "data:image/svg+xml;utf8," + quote(svg)


def scatter(
    coordinates: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    title: str,
    key: str,
    highlight: Sequence[int] | None = None,
    extent: tuple[float, float, float, float] | None = None,
    on_select: Callable[[list[int]], None] | None = None,
) -> None:
    """The projection (axes fixed to ``extent`` if given); ``highlight`` rows drawn on top of the
    faded rest, a single one also as a star. A click, box or lasso calls ``on_select`` with the
    selected rows before the (fragment's) rerun."""
    figure = projection_figure(coordinates, labels, class_names, title=title, extent=extent)
    if highlight:
        figure.update_traces(
            selectedpoints=list(highlight),
            selected={"marker": {"size": 9, "opacity": 1.0}},
            unselected={"marker": {"opacity": 0.12}},
        )
        if len(highlight) == 1:
            row = int(highlight[0])
            figure.add_scattergl(
                x=[coordinates[row, 0]], y=[coordinates[row, 1]], mode="markers",
                marker=SELECTED_STAR, customdata=[row], showlegend=False,
                hovertemplate=f"#{row} (highlighted)<extra></extra>",
            )  # fmt: skip

    def report() -> None:
        if on_select is not None:
            on_select(selected_items(st.session_state.get(key)))

    st.plotly_chart(
        figure,
        key=key,
        on_select=report,
        selection_mode=("points", "box", "lasso"),
        config=PLOT_CONFIG,
    )


def snapshot_player(
    run_dir: Path, class_names: Sequence[str] | None, *, key: str, allow_umap: bool = True
) -> None:
    """The run's snapshots over epochs: PCA frames at once, the aligned UMAP chain when the
    background thread has it (``allow_umap``: not while the run trains); a slider and a play
    button (client-side animation)."""
    readable, problems = player.readable_snapshots(run_dir)
    for problem in problems:
        st.caption(f"Snapshot left out: {problem}")
    snapshots = player.same_items(readable)
    if len(snapshots) < 2:
        st.caption("The run has fewer than two snapshots: nothing to play yet.")
        return
    epochs = [s.epoch for s in snapshots]
    labels = snapshots[-1].labels
    with_umap = allow_umap and umap_enabled()
    methods = ["UMAP (aligned)", "PCA (aligned)"] if with_umap else ["PCA (aligned)"]
    method = st.radio("layout", methods, horizontal=True, key=f"{key}-method")
    frames = player.aligned_pca_frames(snapshots)
    if method.startswith("UMAP"):
        cached = player.cached_umap_frames(snapshots)
        if all(frame is not None for frame in cached):
            frames = cached
        else:
            chain_key = player.umap_chain_keys(snapshots)[-1]

            def ready() -> bool:
                return (
                    background(chain_key, lambda: player.compute_umap_frames(snapshots)) is not None
                )

            ready()
            common.rerun_when_ready(
                ready, "The aligned UMAP of the snapshots is computing; PCA until then."
            )
            method = "PCA (aligned)"
    figure = player.animation_figure(
        epochs,
        frames,
        labels,
        class_names,
        title=f"{method} of {len(labels)} test items over epochs",
    )
    player.show(figure, key=f"{key}-player")


# --- Inspect's projection explorer (one fragment) ----------------------------------------------


def selected_items(event: Any) -> list[int]:
    """Item indices of a plotly selection event (every trace's customdata is item indices)."""
    if not event:
        return []
    items = []
    for point in event.get("selection", {}).get("points", []):
        data = point.get("customdata")
        if isinstance(data, list):
            data = data[0] if data else None
        if data is not None and int(data) not in items:
            items.append(int(data))
    return items


def _keep_selection(chart_key: str, state_key: str, seen_key: str) -> None:
    """The chart's ``on_select`` callback: a new click, box or lasso replaces the kept selection
    before the fragment reruns, so the star and rings are drawn in that same run (one round
    trip); an event that only repeats the last one (plotly re-reports it) changes nothing."""
    items = selected_items(st.session_state.get(chart_key))
    if items and items != st.session_state.get(seen_key):
        st.session_state[seen_key] = items
        st.session_state[state_key] = items


@st.fragment
def explorer(
    coordinates: np.ndarray,
    opened: Opened,
    report: analysis.RetrievalReport,
    *,
    key: str,
    title: str = "",
) -> None:
    """The projection coloured by class (one WebGL trace), Recall@1 hit/miss, AP@R or nearest
    wrong class, with a class filter, and the selected item's neighbours below it. A fragment: a
    colour change, a filter, a click or "clear selection" reruns only this panel, and nothing
    here recomputes what a click does not change (the report's kNN is computed once per file,
    :func:`app.panels.common.analysed`). The selection is kept until another one is made or
    cleared, so the star and rings drawn for it never clear it."""
    labels, class_names = opened.labels, opened.class_names
    controls = st.columns([2, 3])
    color_by = controls[0].selectbox("colour by", COLOR_MODES, key=f"{key}-color")
    shown_names = controls[1].multiselect(
        "show only classes (type to search)",
        list(class_names),
        key=f"{key}-classes",
        placeholder=f"all {len(class_names)} classes",
    )
    state_key, seen_key = f"{key}-selected", f"{key}-seen"
    # A cleared selection starts a new chart widget, so clicking the same point again is news.
    chart_key = f"{key}-chart-{st.session_state.get(f'{key}-cleared', 0)}"
    selected: list[int] = [i for i in st.session_state.get(state_key, []) if i < len(labels)]
    single = selected[0] if len(selected) == 1 else None
    neighbors: list[int] = []
    if single is not None:
        neighbors = analysis.retrieval_rows(report, labels, [single], NEIGHBORS_SHOWN)[0].neighbors
    nearest_wrong = None
    if color_by == "nearest wrong class":
        nearest_wrong = common.nearest_other(opened).negative_index
    name_to_label = {name: index for index, name in enumerate(class_names)}
    figure = inspect_projection_figure(
        coordinates,
        labels,
        class_names,
        color_by=color_by,
        hits=analysis.hit_at_1(report, labels),
        average_precision=report.average_precision_at_r,
        nearest_wrong=nearest_wrong,
        shown_classes=[name_to_label[n] for n in shown_names] or None,
        selected=single,
        neighbors=neighbors,
        title=title,
    )
    st.plotly_chart(
        figure,
        key=chart_key,
        on_select=lambda: _keep_selection(chart_key, state_key, seen_key),
        selection_mode=("points", "box", "lasso"),
        config=PLOT_CONFIG,
    )
    image_uri = common.image_uri(opened) if selected else None  # opened once something is picked
    selection_details(selected, opened, report, image_uri, key=key)


def _clear(key: str) -> None:
    st.session_state[f"{key}-selected"] = []
    st.session_state.pop(f"{key}-seen", None)
    st.session_state[f"{key}-cleared"] = st.session_state.get(f"{key}-cleared", 0) + 1


def selection_details(
    selected: Sequence[int],
    opened: Opened,
    report: analysis.RetrievalReport,
    image_uri: Callable[[int], str] | None,
    *,
    key: str,
) -> None:
    """One selected item: its nearest neighbours in the embedding space, with thumbnails (when
    there are images), index, class and distance. Several: the first of them, labelled."""
    labels, class_names = opened.labels, opened.class_names

    def class_of(index: int) -> str:
        return analysis.class_name(class_names, int(labels[int(index)]))

    if not selected:
        st.caption(
            "Click a point to see its nearest neighbours in the embedding space. Box/lasso "
            "(toolbar) selects many; in those modes a click starts a drag, so switch back to pan "
            "to click."
        )
        return
    left, right = st.columns([3, 1])  # the button's label fits at 1024 px
    right.button("clear selection", key=f"{key}-clear", on_click=_clear, args=(key,))
    if len(selected) == 1:
        single = int(selected[0])
        row = analysis.retrieval_rows(report, labels, [single], NEIGHBORS_SHOWN)
        ap = report.average_precision_at_r[single]
        hit = analysis.hit_at_1(report, labels)[single]
        verdict = "lone query" if np.isnan(hit) else ("hit" if hit == 1 else "miss")
        if opened.is_query is not None and not opened.is_query[single]:
            left.markdown(
                f"**Item #{single} · {class_of(single)}** is not a query (gallery only): it "
                "has no neighbours under the query/gallery protocol."
            )
            return
        among = "in the gallery" if opened.is_query is not None else "in the embedding space"
        left.markdown(
            f"**Item #{single} · {class_of(single)}**: its {len(row[0].neighbors)} nearest "
            f"neighbours {among} (Euclidean distance d; green border: same "
            f"class, red: other). AP@R {ap:.2f}, Recall@1 {verdict}."
        )
        st.html(
            retrieval_grid_html(
                row,
                image_uri,
                lambda c: analysis.class_name(class_names, c),
                caption=lambda r: f"selected #{r.query}",
                item_class=lambda i: int(labels[i]),
            )
        )
        return
    preview = list(selected)[: common.SELECTION_PREVIEW]
    classes = len({int(labels[i]) for i in selected})
    left.markdown(
        f"**{len(selected)} selected** from {classes} classes; "
        f"the first {len(preview)} (index · class):"
    )
    st.html(thumbnails_html(preview, image_uri, class_of))
