"""Playing a run's snapshots: aligned PCA frames at once, a cached UMAP chain, the animated figure,
and the one player (app/figures/animation.py) that it shares with the Toy lab's replay."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from streamlit.testing.v1 import AppTest

from app.figures import animation
from app.figures.replay import FRAME_MILLISECONDS, replay_figure
from app.panels import player
from dml_core.engine.evaluation import write_snapshot
from dml_core.engine.projection import pca_2d
from toy import ToySettings, record_toy


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


def test_a_hostile_snapshot_is_left_out_with_its_reason(run_dir: Path) -> None:
    """A snapshot whose header claims ~4 TB is refused from its header (nothing allocated); a
    truncated one too; the readable ones still play."""
    import io
    import zipfile

    from numpy.lib import format as npy_format

    header = io.BytesIO()
    npy_format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 1000)}
    )
    with zipfile.ZipFile(run_dir / "snapshots" / "epoch_004.npz", "w") as archive:
        archive.writestr("embeddings.npy", header.getvalue())
    (run_dir / "snapshots" / "epoch_005.npz").write_bytes(b"PK\x03\x04 truncated")
    snapshots, problems = player.readable_snapshots(run_dir)
    assert [s.epoch for s in snapshots] == [1, 2, 3]
    assert [p.split(":")[0] for p in problems] == ["epoch_004.npz", "epoch_005.npz"]
    assert "embeddings" in problems[0] and "GiB" in problems[0], problems


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


def test_the_snapshot_player_and_the_toy_replay_are_one_player(run_dir: Path) -> None:
    snapshots = [player.read_snapshot(p) for p in player.snapshot_paths(run_dir)]
    snapshot_figure = player.animation_figure(
        [1, 2, 3], player.aligned_pca_frames(snapshots), snapshots[0].labels, None, title="PCA"
    )
    toy_run = record_toy(ToySettings(iterations=4))
    result = toy_run.result
    toy_figure = replay_figure({"base": toy_run.frames}, result.train_labels, result.test_labels)
    menus = [figure.layout.updatemenus[0] for figure in (snapshot_figure, toy_figure)]
    labels = [[button.label for button in menu.buttons] for menu in menus]
    assert labels[0] == labels[1] == [*(f"▶ {s}" for s in animation.SPEEDS), "❚❚"]
    for menu, frame_ms in zip(menus, (player.FRAME_MS, FRAME_MILLISECONDS), strict=True):
        durations = [button.args[1]["frame"]["duration"] for button in menu.buttons[:-1]]
        assert durations == [round(frame_ms / speed) for speed in animation.SPEEDS.values()]
        assert menu.buttons[-1].args[1] == animation.STILL
    for figure in (snapshot_figure, toy_figure):
        slider = figure.layout.sliders[0]
        assert [step.args[0][0] for step in slider.steps] == [f.name for f in figure.frames]
        assert all(step.args[1] == animation.STILL for step in slider.steps)
        assert slider.active == len(figure.frames) - 1
        assert figure.layout.updatemenus[0].y == slider.y > 1, "controls above the plot"
    # the epoch is in the title at every frame, as the toy's step is
    assert snapshot_figure.layout.title.text == "PCA · epoch 3"
    assert [f.layout.title.text for f in snapshot_figure.frames] == [
        f"PCA · epoch {e}" for e in (1, 2, 3)
    ]


def test_player_labels_at_most_ten_slider_steps_and_needs_a_frame() -> None:
    names = [str(step) for step in range(0, 250, 10)]  # 25 frames
    labels = animation.slider_labels(names)
    assert [label for label in labels if label] == names[::3]
    assert animation.slider_labels(["1", "2", "3"]) == ["1", "2", "3"]
    figure = go.Figure(go.Scatter(x=[0], y=[0]))
    with pytest.raises(ValueError, match="at least one frame"):
        animation.add_player(figure, [], traces=[0], frame_ms=100, y=1.1)
    frames = [animation.PlayerFrame(n, [{"x": [i], "y": [i]}]) for i, n in enumerate(names)]
    animation.add_player(figure, frames, traces=[0], frame_ms=100, y=1.1, active=4)
    assert figure.layout.sliders[0].active == 4 and len(figure.frames) == 25
    assert list(figure.frames[7].traces) == [0] and figure.frames[7].data[0].x == (7,)


def test_show_draws_the_player_with_its_config_and_the_interruption_handler() -> None:
    def page() -> None:
        import plotly.graph_objects as go

        from app.panels import player

        player.show(go.Figure(go.Scatter(x=[0, 1], y=[1, 0])), key="shown-player")

    app = AppTest.from_function(page).run()
    assert not app.exception
    (chart,) = app.get("plotly_chart")
    assert json.loads(chart.proto.config) == animation.PLAYER_CONFIG
    (script,) = app.get("html")
    assert "unhandledrejection" in script.proto.body and script.proto.unsafe_allow_javascript
