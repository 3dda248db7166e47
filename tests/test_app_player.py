"""Playing a run's snapshots: aligned PCA frames at once, a cached UMAP chain, the animated figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app import player
from dml_core.engine.evaluation import write_snapshot
from dml_core.engine.projection import pca_2d


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run folder with three snapshots of the same 150 items drifting between epochs."""
    monkeypatch.setenv("DML_EXPLORER_PROJECTION_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 16)) * 3
    labels = rng.integers(0, 5, 150)
    points = centres[labels] + rng.normal(size=(150, 16))
    for epoch in (1, 2, 3):
        points = points + 0.3 * rng.normal(size=points.shape)
        embeddings = torch.as_tensor(points, dtype=torch.float32)
        write_snapshot(
            tmp_path / "run" / "snapshots" / f"epoch_{epoch:03d}.npz",
            embeddings,
            labels,
            np.arange(150),
            epoch,
        )
    return tmp_path / "run"


def test_snapshots_read_back_with_their_pca(run_dir: Path) -> None:
    snapshots = [player.read_snapshot(p) for p in player.snapshot_paths(run_dir)]
    assert [s.epoch for s in snapshots] == [1, 2, 3]
    for snapshot in snapshots:
        np.testing.assert_allclose(snapshot.pca, pca_2d(snapshot.embeddings), atol=1e-4)
    assert player.snapshot_paths(run_dir / "missing") == []


def test_pca_frames_are_rotated_onto_the_previous_one(run_dir: Path) -> None:
    snapshots = [player.read_snapshot(p) for p in player.snapshot_paths(run_dir)]
    frames = player.aligned_pca_frames(snapshots)
    np.testing.assert_array_equal(frames[0], snapshots[0].pca)
    for previous, frame, snapshot in zip(frames, frames[1:], snapshots[1:], strict=False):
        raw = np.linalg.norm(snapshot.pca - previous, axis=1).mean()
        aligned = np.linalg.norm(frame - previous, axis=1).mean()
        assert aligned <= raw + 1e-6


def test_a_resumed_run_with_other_items_starts_a_new_sequence(run_dir: Path) -> None:
    snapshots = [player.read_snapshot(p) for p in player.snapshot_paths(run_dir)]
    other = player.Snapshot(
        snapshots[0].path, 0, snapshots[0].embeddings, snapshots[0].labels,
        np.arange(1, 151), snapshots[0].pca,
    )  # fmt: skip
    assert player.same_items([other, *snapshots]) == snapshots


def test_the_umap_chain_is_cached_link_by_link(run_dir: Path) -> None:
    snapshots = [player.read_snapshot(p) for p in player.snapshot_paths(run_dir)]
    assert player.cached_umap_frames(snapshots) == [None, None, None]
    frames = player.compute_umap_frames(snapshots)
    assert [f.shape for f in frames] == [(150, 2)] * 3
    for cached, computed in zip(player.cached_umap_frames(snapshots), frames, strict=True):
        np.testing.assert_array_equal(cached, computed)
    # A rewritten middle snapshot invalidates its link and every later one.
    write_snapshot(
        snapshots[1].path,
        torch.as_tensor(snapshots[1].embeddings * 2),
        snapshots[1].labels,
        np.arange(150),
        2,
    )
    reread = [player.read_snapshot(p) for p in player.snapshot_paths(run_dir)]
    cached = player.cached_umap_frames(reread)
    assert cached[0] is not None and cached[1] is None and cached[2] is None


def test_animation_has_a_frame_per_epoch_a_slider_and_a_play_button(run_dir: Path) -> None:
    snapshots = [player.read_snapshot(p) for p in player.snapshot_paths(run_dir)]
    frames = player.aligned_pca_frames(snapshots)
    figure = player.animation_figure(
        [1, 2, 3], frames, snapshots[0].labels, [f"c{i}" for i in range(5)], title="PCA"
    )
    assert len(figure.frames) == 3
    np.testing.assert_allclose(figure.frames[1].data[0].x, frames[1][:, 0])
    np.testing.assert_allclose(figure.data[0].x, frames[-1][:, 0])
    steps = figure.layout.sliders[0].steps
    assert [s.label for s in steps] == ["1", "2", "3"]
    assert figure.layout.updatemenus[0].buttons[0].method == "animate"
    # Axes fixed over all frames, so playing does not rescale the picture.
    low = min(f[:, 0].min() for f in frames)
    assert figure.layout.xaxis.range[0] <= low
