"""The optional trackers on a tiny toy run: TensorBoard's scalars read back with its own event
reader, and a W&B run logged offline (no key, no network) whose run file holds the metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dml_core.cli import main
from dml_core.engine.events import read_events

TINY_TOY = ["train", "--preset", "toy", "--epochs", "4", "--eval-every", "2", "--log-every", "1"]
TINY_TOY += ["--no-progress"]


def test_tensorboard_scalars_read_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    assert main([*TINY_TOY, "--tensorboard", "--out", str(run)]) == 0
    capsys.readouterr()
    accumulator = EventAccumulator(str(run / "tensorboard"))
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    assert {"train/loss", "test/recall@1", "train/rho@2"} <= set(tags)
    events, _ = read_events(run / "events.jsonl")
    steps = [e for e in events if e["kind"] == "step" and "loss" in e]
    losses = {s.step: s.value for s in accumulator.Scalars("train/loss")}
    assert losses.keys() == {e["step"] for e in steps}
    for event in steps:
        assert losses[event["step"]] == pytest.approx(event["loss"], rel=1e-6)
    evals = [e for e in events if e["kind"] == "eval"]
    recall = [(s.step, s.value) for s in accumulator.Scalars("test/recall@1")]
    assert recall == [
        (e["step"], pytest.approx(e["metrics"]["test/recall@1"], rel=1e-6)) for e in evals
    ]


def wandb_records(path: Path) -> list:
    """Every record of a ``.wandb`` run file (LevelDB log framing: 32 KiB blocks, 7-byte record
    headers checksum/length/type; FULL=1, FIRST=2, MIDDLE=3, LAST=4) parsed as protobufs."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", "a W&B run file starts with its magic"
    block, position, pending, records = 32768, 7, b"", []
    while position + 7 <= len(data):
        if block - position % block < 7:
            position += block - position % block  # block trailer padding
            continue
        length = int.from_bytes(data[position + 4 : position + 6], "little")
        kind = data[position + 6]
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 2):
            pending = chunk
        elif kind in (3, 4):
            pending += chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def logged_history(run_file: Path) -> dict[int, dict[str, str]]:
    """The history rows of a ``.wandb`` file by step: {step: {key: JSON value}}."""
    logged: dict[int, dict[str, str]] = {}
    for record in wandb_records(run_file):
        if record.WhichOneof("record_type") == "history":
            row = {i.key or "/".join(i.nested_key): i.value_json for i in record.history.item}
            logged.setdefault(int(row["_step"]), {}).update(row)
    return logged


@pytest.mark.slow
def test_wandb_offline_run_holds_the_metrics(tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        WANDB_DIR=str(tmp_path / "wandb_dir"),
        HOME=str(tmp_path / "home"),  # no ~/.netrc or saved key
        # Any connection attempt would fail against these (nothing listens on port 9).
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
    )
    finished = subprocess.run(
        [sys.executable, "-m", "dml_core", *TINY_TOY, "--wandb", "--out", str(run)],
        env=env,
        stdin=subprocess.DEVNULL,  # a key prompt would fail instead of waiting
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    (run_file,) = (tmp_path / "wandb_dir" / "wandb").glob("offline-run-*/run-*.wandb")
    logged = logged_history(run_file)
    events, _ = read_events(run / "events.jsonl")
    for event in (e for e in events if e["kind"] == "eval"):
        assert json.loads(logged[event["step"]]["test/recall@1"]) == pytest.approx(
            event["metrics"]["test/recall@1"], rel=1e-6
        )
    steps = [e for e in events if e["kind"] == "step" and "loss" in e]
    assert steps and all(
        json.loads(logged[e["step"]]["train/loss"]) == pytest.approx(e["loss"], rel=1e-6)
        for e in steps
    )
    (started,) = [r.run for r in wandb_records(run_file) if r.WhichOneof("record_type") == "run"]
    config = {item.key: json.loads(item.value_json) for item in started.config.update}
    assert config["loss"] == "contrastive" and config["dataset"] == "toy_diagonal"


def test_wandb_defaults_to_offline_in_the_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no WANDB_MODE and no WANDB_DIR the run logs offline into ``<run>/wandb``."""
    wandb = pytest.importorskip("wandb")
    from dml_core.engine.loggers import Trackers

    for name in ("WANDB_MODE", "WANDB_DIR", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    trackers = Trackers(tensorboard=False, wandb=True, out_dir=tmp_path / "run", config={"a": 1})
    trackers.log({"test/recall@1": 0.5}, step=3)
    trackers.close()
    trackers.close()  # a second close does nothing
    # finish() returns before wandb's service has written the run file; shutting the service
    # down waits for it, as the exit of a training process does (the subprocess test above).
    wandb.teardown()
    (run_file,) = (tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb")
    assert json.loads(logged_history(run_file)[3]["test/recall@1"]) == 0.5
