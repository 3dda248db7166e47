"""Background runs: the argv the app builds, curves from events, and a real launch → reattach → stop."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app import runs
from dml_core.cli import _parser
from dml_core.config import config_from_args
from dml_core.engine.checkpoint import read_metadata


def test_train_command_round_trips_through_the_cli(tmp_path: Path) -> None:
    options = {
        "dataset": "glyphs",
        "miner": None,
        "rho": 0.35,
        "frozen_bn": False,
        "eval_ks": [1, 4],
        "dataset_options": {"num_classes": 12},
        "lr": 0.001,
    }
    argv = runs.train_command(options, tmp_path / "run", preset="glyphs")
    assert argv[1:4] == ["-m", "dml_core", "train"]
    args = _parser().parse_args(argv[3:])
    config = config_from_args(args)
    assert args.out == str(tmp_path / "run") and args.preset == "glyphs"
    for name, value in options.items():
        assert getattr(config, name) == value
    assert config.arch == "small_cnn"  # from the preset


def test_curves_collect_loss_per_step_and_metrics_per_epoch() -> None:
    events = [
        {"kind": "start", "t": 0},
        {"kind": "step", "step": 10, "loss": 0.5},
        {"kind": "step", "step": 20, "loss": None},
        {"kind": "eval", "epoch": 1, "metrics": {"test/recall@1": 0.4, "train/rho@2": 1.5}},
        {"kind": "step", "step": 30, "loss": 0.25},
        {"kind": "eval", "epoch": 2, "metrics": {"test/recall@1": 0.6}},
    ]
    series = runs.curves(events)
    assert series["loss"] == ([10, 30], [0.5, 0.25])
    assert series["test/recall@1"] == ([1, 2], [0.4, 0.6])
    assert series["train/rho@2"] == ([1], [1.5])
    assert series["train/pi_ratio"] == ([], [])


def test_bad_run_names_and_reused_directories_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="run name"):
        runs.launch_run("../escape", {}, root=tmp_path)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "events.jsonl").write_text("")
    with pytest.raises(FileExistsError):
        runs.launch_run("taken", {}, root=tmp_path)


def test_stale_pid_file_is_not_running(tmp_path: Path) -> None:
    run_dir = tmp_path / "stale"
    run_dir.mkdir()
    (run_dir / "events.jsonl").write_text('{"t": 0, "kind": "start"}\n')
    (run_dir / runs.PID_FILE).write_text('{"pid": 999999999}')
    state = runs.refresh(runs.RunState(run_dir))
    assert not state.running and state.status == "ended without a done event"
    assert runs.running_runs(tmp_path) == []
    assert not runs.stop_run(run_dir)


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.slow
def test_launch_reattach_and_stop_keeps_the_checkpoint(tmp_path: Path) -> None:
    options = {"epochs": 100_000, "log_every": 1, "eval_every": 1000, "device": "cpu"}
    run_dir = runs.launch_run("toy-live", options, preset="toy", root=tmp_path)
    state = runs.RunState(run_dir)
    try:
        _wait_for(
            lambda: (
                (run_dir / "last.safetensors").exists()
                and any(e["kind"] == "step" for e in runs.refresh(state).events)
            ),
            90,
            "the first epoch",
        )
        assert state.running and state.status == "running"
        assert runs.running_runs(tmp_path) == [run_dir]  # a reloaded page finds it again
        assert runs.stop_run(run_dir)
        _wait_for(lambda: runs.refresh(state).finished is not None, 60, "the done event")
    finally:
        pid = runs.read_pid(run_dir)
        if pid is not None and runs.process_alive(pid):
            runs._children[pid].kill()
    assert state.finished["kind"] == "done" and state.finished["reason"] == "stopped"
    _wait_for(lambda: not runs.process_alive(runs.read_pid(run_dir)), 30, "the process to exit")
    assert runs.running_runs(tmp_path) == []
    assert read_metadata(run_dir / "last.safetensors")["epoch"] >= 1
    assert runs.curves(state.events)["loss"][0]
