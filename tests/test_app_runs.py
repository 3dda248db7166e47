"""Background runs: the argv the app builds, curves from events, and a real launch → reattach → stop."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from app import runs
from dml_core.cli import _parser
from dml_core.engine.checkpoint_header import read_metadata
from dml_core.presets import config_from_args


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


def test_rho_at_k_is_undefined_for_embeddings_of_k_dimensions_or_fewer() -> None:
    assert runs.undefined_metrics({"embed_dim": 2}) == {"train/rho@2"}
    assert runs.undefined_metrics({"embed_dim": 3}) == set()
    assert runs.undefined_metrics(None) == set()
    events = [
        {"kind": "start", "config": {"embed_dim": 2}},
        {"kind": "eval", "epoch": 1, "metrics": {"test/recall@1": 0.5, "train/rho@2": 0.0}},
    ]
    series = runs.curves(events)
    assert series["train/rho@2"] is None and series["test/recall@1"] == ([1], [0.5])


def test_lines_that_are_not_events_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text(
        '{"t": 0, "kind": "start"}\n42\n{"no": "kind"}\n[1]\n{"t": 1, "kind": "done"}\n'
    )
    state = runs.refresh(runs.RunState(tmp_path))
    assert [e["kind"] for e in state.events] == ["start", "done"]
    assert state.status == "finished"


def test_corrupted_lines_are_skipped_and_reported_with_file_and_line(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"t": 0, "kind": "start"}\n{"t": 1, "kind": "st\n42\n{"no": "kind"}\n')
    state = runs.refresh(runs.RunState(tmp_path))
    assert [e["kind"] for e in state.events] == ["start"]
    assert [line.split(": ", 1)[0] for line in state.skipped] == [
        f"{events}:2",
        f"{events}:3",
        f"{events}:4",
    ]
    assert "not a JSON line" in state.skipped[0] and "kind None" in state.skipped[2]
    assert state.skipped_note() == f"3 lines skipped (first: {state.skipped[0]})"
    with open(events, "a") as handle:  # tailing on: a good line adds nothing to the list
        handle.write('{"t": 2, "kind": "done"}\n')
    assert runs.refresh(state).status == "finished" and len(state.skipped) == 3
    assert runs.RunState(tmp_path / "clean").skipped_note() is None


def test_launch_error_is_the_first_error_line(tmp_path: Path) -> None:
    log = tmp_path / runs.LOG_FILE
    assert runs.launch_error(tmp_path) == "the process exited without output"
    log.write_text("loading\nerror: dataset 'cub200' needs root=<folder>\nmore\n")
    assert runs.launch_error(tmp_path) == "error: dataset 'cub200' needs root=<folder>"
    log.write_text(
        'Traceback (most recent call last):\n  File "x.py", line 1\n'
        "RuntimeError: CUDA out of memory\nnote: later\n"
    )
    assert runs.launch_error(tmp_path) == "RuntimeError: CUDA out of memory"


def test_a_used_run_folder_is_refused_even_without_events(tmp_path: Path) -> None:
    (tmp_path / "failed").mkdir()
    (tmp_path / "failed" / runs.LOG_FILE).write_text("error: boom\n")
    with pytest.raises(FileExistsError, match="already holds a run"):
        runs.launch_run("failed", {}, root=tmp_path)


def test_two_launches_of_one_name_start_one_run(tmp_path: Path) -> None:
    """Enter + Start launched twice into one folder: the folder is claimed atomically."""
    options = {"no_such_option": 1}  # the CLI refuses it at once: a real, short-lived process
    barrier = threading.Barrier(4)
    results: list[Path | str] = []

    def launch() -> None:
        barrier.wait()
        try:
            results.append(runs.launch_run("twice", options, root=tmp_path))
        except FileExistsError as error:
            results.append(str(error))

    threads = [threading.Thread(target=launch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    started = [r for r in results if isinstance(r, Path)]
    assert started == [tmp_path / "twice"]
    assert all("already holds a run" in r for r in results if isinstance(r, str))
    with pytest.raises(FileExistsError, match="already holds a run"):
        runs.launch_run("twice", options, root=tmp_path)
    runs._children[runs.read_pid(tmp_path / "twice")].wait(timeout=120)


@pytest.mark.slow
def test_a_run_failing_at_launch_is_listed_with_its_error(tmp_path: Path) -> None:
    run_dir = runs.launch_run(
        "no-cub", {"dataset": "cub200", "device": "cpu"}, preset="toy", root=tmp_path
    )
    state = runs.RunState(run_dir)
    _wait_for(lambda: not runs.refresh(state).running, 120, "the process to fail")
    assert runs.discover_runs(tmp_path) == [run_dir]  # listed although it has no events.jsonl
    assert not (run_dir / "events.jsonl").exists()
    assert state.status == "failed at launch" and state.failed
    assert state.error_line().startswith("error: dataset 'cub200' needs root")
    assert runs.exit_status(runs.read_pid(run_dir)) == 2


def test_a_bad_data_root_or_value_is_one_line_before_launch(tmp_path: Path) -> None:
    assert runs.launch_problem({"epochs": 1}, preset="toy") is None
    missing = tmp_path / "absent"
    problem = runs.launch_problem({"dataset": "cub200", "data_root": str(missing)}, "toy")
    assert problem is not None and "\n" not in problem
    assert str(missing) in problem and "does not exist" in problem
    assert "needs root" in runs.launch_problem({"dataset": "cub200"}, "toy")
    assert "rho is a probability" in runs.launch_problem({"rho": 2.0}, "toy")
    assert "no_such_option" in runs.launch_problem({"no_such_option": 1}, "toy")
    assert list(tmp_path.iterdir()) == []  # nothing was created


@pytest.mark.slow
def test_a_stopped_run_reads_stopping_until_its_done_event(tmp_path: Path) -> None:
    options = {"epochs": 100_000, "log_every": 1, "eval_every": 1000, "device": "cpu"}
    run_dir = runs.launch_run("toy-stop", options, preset="toy", root=tmp_path)
    state = runs.RunState(run_dir)
    try:
        _wait_for(
            lambda: any(e["kind"] == "step" for e in runs.refresh(state).events), 90, "a step"
        )
        # A stop recorded for another process (before a resume in this folder) is not this one's.
        (run_dir / runs.STOP_FILE).write_text('{"pid": 1}')
        assert state.status == "running" and not state.stopping
        assert runs.stop_run(run_dir)
        # From the click on, until the done event: the same state reads "stopping…".
        assert runs.refresh(state).finished is not None or state.status == runs.STOPPING
        _wait_for(lambda: runs.refresh(state).finished is not None, 60, "the done event")
    finally:
        pid = runs.read_pid(run_dir)
        if pid is not None and runs.process_alive(pid):
            runs._children[pid].kill()
    assert state.status == "stopped" and not state.stopping


def test_a_run_stopped_before_its_first_event_is_not_a_failed_launch(tmp_path: Path) -> None:
    """Its process ends with "interrupted (Ctrl-C) before training started" and no event."""
    run_dir = tmp_path / "early"
    run_dir.mkdir()
    (run_dir / runs.LOG_FILE).write_text("error: interrupted (Ctrl-C) before training started\n")
    (run_dir / runs.PID_FILE).write_text('{"pid": 999999999}')
    assert runs.RunState(run_dir).status == "failed at launch"  # no stop was sent to it
    (run_dir / runs.STOP_FILE).write_text('{"pid": 999999999}')
    state = runs.refresh(runs.RunState(run_dir))
    assert state.status == "stopped before training" and not state.failed and not state.stopping
