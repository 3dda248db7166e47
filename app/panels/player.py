"""Play a run's embedding over epochs: aligned layouts of its snapshots and an animated figure.

Snapshots (``snapshots/epoch_NNN.npz``, docs/DESIGN.md §6) hold the same test items at every
evaluation. PCA frames come from the snapshots' stored ``pca`` (computed for older files), each
rotated onto the previous one (orthogonal Procrustes), so they are there the moment the snapshots
are. UMAP frames are a chain: each snapshot's UMAP starts from the previous snapshot's layout
(``dml_core.engine.projection.umap_2d(init=…)``), so an item moves only as far as its neighbourhood
changed; each link is cached on disk under the snapshot file's version and its predecessor's key.
The figure is the app's one animation player (:mod:`app.figures.animation`, also the Toy lab's
replay): it animates on the client, so playing costs the server nothing. :func:`show` draws a
player in Streamlit.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from app.cache import cache_key, read_arrays, write_arrays
from app.figures.animation import CONTROLS_HEIGHT, PLAYER_CONFIG, PlayerFrame, add_player
from app.figures.palette import CLASS_COLORSCALE
from dml_core.engine.projection import pca_2d, procrustes_align, umap_2d
from dml_core.io.arrays import check_npz

FRAME_MS = 700
"""Time an epoch stays on screen at 1×."""
HEIGHT = 540
TITLE_HEIGHT = 40


@dataclass(frozen=True)
class Snapshot:
    """One snapshot file read back."""

    path: Path
    epoch: int
    embeddings: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    pca: np.ndarray


def snapshot_paths(run_dir: str | Path) -> list[Path]:
    """The run's snapshot files in epoch order (empty when it has none)."""
    folder = Path(run_dir) / "snapshots"
    return sorted(folder.glob("epoch_*.npz")) if folder.is_dir() else []


def readable_snapshots(run_dir: str | Path) -> tuple[list[Snapshot], list[str]]:
    """The run's snapshots that read, and ``"<name>: <why>"`` for each one that does not (a
    hostile or truncated file in a run folder is skipped, not a traceback on the page)."""
    snapshots, problems = [], []
    for path in snapshot_paths(run_dir):
        try:
            snapshots.append(read_snapshot(path))
        except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as error:
            problems.append(f"{path.name}: {error}")
    return snapshots, problems


def read_snapshot(path: str | Path) -> Snapshot:
    """A snapshot's arrays (headers checked before numpy allocates); ``pca`` computed when the
    file predates it."""
    check_npz(path)
    with np.load(path, allow_pickle=False) as stored:
        embeddings = np.asarray(stored["embeddings"], dtype=np.float32)
        pca = stored["pca"] if "pca" in stored.files else pca_2d(embeddings)
        return Snapshot(
            Path(path),
            int(stored["epoch"]),
            embeddings,
            np.asarray(stored["labels"]),
            np.asarray(stored["indices"]),
            np.asarray(pca, dtype=np.float32),
        )


def same_items(snapshots: Sequence[Snapshot]) -> list[Snapshot]:
    """The longest run of snapshots, from the last backwards, that hold the same items (a resumed
    run with another subsample starts a new run of them)."""
    if not snapshots:
        return []
    kept = [snapshots[-1]]
    for snapshot in reversed(snapshots[:-1]):
        if not np.array_equal(snapshot.indices, kept[0].indices):
            break
        kept.insert(0, snapshot)
    return kept


def aligned_pca_frames(snapshots: Sequence[Snapshot]) -> list[np.ndarray]:
    """Each snapshot's PCA rotated/reflected onto the previous frame."""
    frames: list[np.ndarray] = []
    for snapshot in snapshots:
        layout = snapshot.pca
        frames.append(procrustes_align(layout, frames[-1]) if frames else layout)
    return frames


def umap_chain_keys(snapshots: Sequence[Snapshot]) -> list[str]:
    """The cache key of each link of the UMAP chain (its file version and the previous key)."""
    keys: list[str] = []
    for snapshot in snapshots:
        keys.append(cache_key(snapshot.path, "aligned-umap", keys[-1] if keys else ""))
    return keys


def cached_umap_frames(snapshots: Sequence[Snapshot]) -> list[np.ndarray | None]:
    """The chain's layouts already on disk (None where a link is missing)."""
    frames: list[np.ndarray | None] = []
    for key in umap_chain_keys(snapshots):
        stored = read_arrays(key)
        frames.append(None if stored is None else stored.get("coordinates"))
    return frames


def compute_umap_frames(snapshots: Sequence[Snapshot]) -> list[np.ndarray]:
    """Fill the chain (cached links are read, missing ones fitted from their predecessor)."""
    frames: list[np.ndarray] = []
    for snapshot, key, cached in zip(
        snapshots, umap_chain_keys(snapshots), cached_umap_frames(snapshots), strict=True
    ):
        if cached is None:
            cached = umap_2d(snapshot.embeddings, init=frames[-1] if frames else None)
            write_arrays(key, coordinates=cached)
        frames.append(cached)
    return frames


def animation_figure(
    epochs: Sequence[int],
    frames: Sequence[np.ndarray],
    labels: np.ndarray,
    class_names: Sequence[str] | None,
    *,
    title: str,
    start: int | None = None,
) -> go.Figure:
    """The layouts as the app's player (:func:`app.figures.animation.add_player`): one frame per
    epoch, ▶ ¼×…2× / ❚❚ and an epoch slider above the plot, the epoch in the title; the axes
    hold every frame, so playing never rescales the picture."""
    labels = np.asarray(labels)
    names = [class_names[int(v)] if class_names else str(int(v)) for v in labels]
    text = [f"#{i} · {n}" for i, n in enumerate(names)]
    lows = np.min([f.min(axis=0) for f in frames], axis=0)
    highs = np.max([f.max(axis=0) for f in frames], axis=0)
    pad = 0.05 * (highs - lows + 1e-9)
    shown = len(frames) - 1 if start is None else start
    figure = go.Figure(
        go.Scattergl(
            x=frames[shown][:, 0],
            y=frames[shown][:, 1],
            mode="markers",
            marker={"color": labels, "colorscale": CLASS_COLORSCALE, "size": 5, "opacity": 0.8},
            text=text,
            hovertemplate="%{text}<extra></extra>",
        )
    )
    plot_height = HEIGHT - TITLE_HEIGHT - CONTROLS_HEIGHT - 10
    figure.update_layout(
        title={"text": f"{title} · epoch {epochs[shown]}", "y": 0.99, "yanchor": "top"},
        height=HEIGHT,
        margin={"l": 10, "r": 10, "t": TITLE_HEIGHT + CONTROLS_HEIGHT, "b": 10},
        xaxis={"range": [lows[0] - pad[0], highs[0] + pad[0]], "showticklabels": False},
        yaxis={"range": [lows[1] - pad[1], highs[1] + pad[1]], "showticklabels": False},
    )
    player_frames = [
        PlayerFrame(
            str(epoch),
            [{"type": "scattergl", "x": layout[:, 0], "y": layout[:, 1]}],
            {"title": {"text": f"{title} · epoch {epoch}"}},
        )
        for epoch, layout in zip(epochs, frames, strict=True)
    ]
    controls_top = 1 + CONTROLS_HEIGHT / plot_height
    return add_player(
        figure, player_frames, traces=[0], frame_ms=FRAME_MS, y=controls_top, active=shown
    )


QUIET_INTERRUPTIONS = """<script>
if (!window.dmlQuietAnimations) {
  window.dmlQuietAnimations = true;
  // plotly.js rejects an interrupted animation's promise with no reason (a second ▶, ❚❚ or a
  // slider click while playing); nothing waits on it, so the page marks it as handled.
  window.addEventListener("unhandledrejection", (event) => {
    if (event.reason === undefined) event.preventDefault();
  });
}
</script>"""


def show(figure: go.Figure, *, key: str, where=None) -> None:
    """Draw a player figure in Streamlit (``where``: a container, default the page) with
    :data:`~app.figures.animation.PLAYER_CONFIG`, after the page's handler of interrupted
    animations (:data:`QUIET_INTERRUPTIONS`)."""
    import streamlit as st

    where = where or st
    where.html(QUIET_INTERRUPTIONS, unsafe_allow_javascript=True)
    where.plotly_chart(figure, key=key, config=PLAYER_CONFIG)
