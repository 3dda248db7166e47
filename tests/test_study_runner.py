"""The study runner: shards and Slurm arrays, summaries from run folders, the toy study through the
command line (run, status, results, run again), and a runner killed with SIGKILL mid-study."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dml_core.engine.events import EventLog
from dml_core.study import load_spec
from dml_core.study.runner import start_command
from dml_core.study.summaries import run_dir, summary_path, write_summary
from dml_core.study.tasks import (
    executable,
    parse_shard,
    shard,
    slurm_shard,
    task_state,
    train_command,
)

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "studies/toy.yaml"
FINETUNE = ROOT / "studies/first/glyphs-finetune.yaml"


def test_shards_partition_the_tasks_seed_by_seed() -> None:
    spec = load_spec(FINETUNE)
    tasks = spec.tasks()
    assert len(tasks) == len(spec.methods) * len(spec.seeds) >= 45
    assert [seed for _, seed in tasks[: len(spec.methods)]] == [0] * len(spec.methods)
    shards = [shard(tasks, i, 4) for i in range(1, 5)]
    assert sorted(t for s in shards for t in s) == sorted(tasks)
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "x", "1-4"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def test_every_task_lands_in_exactly_one_slurm_array_shard() -> None:
    """For every array size n from 1 to the number of tasks, and arrays starting at 0 or 1, the
    array's tasks (read from the variables Slurm sets) cover each task of the study once."""
    tasks = load_spec(FINETUNE).tasks()
    assert slurm_shard({}) is None
    for first in (0, 1):
        for count in range(1, len(tasks) + 1):
            seen = []
            for task_id in range(first, first + count):
                env = {
                    "SLURM_ARRAY_TASK_ID": str(task_id),
                    "SLURM_ARRAY_TASK_MIN": str(first),
                    "SLURM_ARRAY_TASK_COUNT": str(count),
                }
                seen += shard(tasks, *slurm_shard(env))
            assert sorted(seen) == sorted(tasks) and len(seen) == len(tasks), (first, count)
    env = {"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"}
    with pytest.raises(ValueError, match="outside its array"):
        slurm_shard(env)


def fake_run_dir(folder: Path, val: list[float], reason: str | None) -> None:
    """A run folder as the trainer writes it: config.json and events.jsonl."""
    folder.mkdir(parents=True)
    backbone = folder.parent / "backbone.safetensors"
    backbone.write_bytes(b"weights")
    (folder / "config.json").write_text(json.dumps({"seed": 0, "pretrained": str(backbone)}))
    log = EventLog(folder / "events.jsonl")
    log.write("start", epoch=0, step=0)
    for epoch, value in enumerate(val, start=1):
        log.write("epoch", epoch=epoch, step=10 * epoch, mean_loss=0.1, seconds=30.0, lr=1e-4)
        metrics = {"val/map@r": value, "test/recall@1": value - 0.1, "val/recall@1": 0.95}
        metrics["val/nmi"] = 0.5
        log.write("eval", epoch=epoch, step=10 * epoch, metrics=metrics)
    if reason:
        log.write("done", epoch=len(val), step=10 * len(val), reason=reason)
    log.close()


def test_summaries_and_commands_from_run_folders(tmp_path: Path) -> None:
    spec = load_spec(FINETUNE).with_output(tmp_path)
    values = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.55, 0.58]
    fake_run_dir(run_dir(spec, "margin", 0), values, "converged")  # the trainer's early stop
    command = train_command(spec, "margin", 0, run_dir(spec, "margin", 0))
    assert write_summary(spec, "margin", 0, command)
    summary = json.loads(summary_path(spec, "margin", 0).read_text())
    assert summary["stop"] == "converged" and summary["history"]["epoch"] == list(range(1, 9))
    assert summary["history"]["val/map@r"][-1] == 0.58
    assert summary["stopping_rule"] == {
        "metric": "val/map@r", "min_epochs": 8, "last_fraction": 0.25, "min_delta": 0.0,
        "from_recovery": False,
    }  # fmt: skip
    assert "val/nmi" not in summary["history"]  # only the kept metrics
    assert summary["pretrained_sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert summary["protocol_hash"] == spec.protocol_hash("margin")
    assert summary["dml_core_version"] == spec.version and summary["train_seconds"] == 240.0
    assert "--preset glyphs-finetune" in summary["command"] and "--early-stop" in command
    assert len(summary_path(spec, "margin", 0).read_bytes()) < 8_000
    assert task_state(spec, "margin", 0) == "finished"

    # Still improving and stopped by a signal: not over, resumed from its checkpoint …
    fake_run_dir(run_dir(spec, "triplet", 0), [0.1, 0.2, 0.3], "stopped")
    assert not write_summary(spec, "triplet", 0, [])
    (run_dir(spec, "triplet", 0) / "last.safetensors").write_bytes(b"x")
    (run_dir(spec, "triplet", 0) / "train_state.pt").write_bytes(b"x")
    assert task_state(spec, "triplet", 0) == "resumable"
    resumed = start_command(spec, "triplet", 0)
    assert resumed[-3:] == ["--resume", str(run_dir(spec, "triplet", 0)), "--no-progress"]

    # … while a folder without a checkpoint is cleared and started afresh.
    fake_run_dir(run_dir(spec, "softmax", 3), [0.1], None)
    fresh = start_command(spec, "softmax", 3)
    assert not run_dir(spec, "softmax", 3).exists() and task_state(spec, "softmax", 3) == "missing"
    assert fresh[fresh.index("--seed") + 1] == "3" and fresh[fresh.index("--miner") + 1] == "none"
    assert fresh[-3:] == ["--out", str(run_dir(spec, "softmax", 3)), "--no-progress"]

    # A run that trained every epoch is over too.
    fake_run_dir(run_dir(spec, "contrastive", 1), [0.1, 0.2, 0.3, 0.4, 0.5], "finished")
    assert write_summary(spec, "contrastive", 1, [])
    assert json.loads(summary_path(spec, "contrastive", 1).read_text())["stop"] == "epoch cap"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dml_core", *args],
        capture_output=True, text=True, cwd=cwd, check=False, timeout=900,
    )  # fmt: skip


def metrics_of(folder: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text())["history"] for p in sorted(folder.glob("*.json"))}


@pytest.fixture(scope="module")
def toy_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy study run once, uninterrupted, through the command line (2 jobs)."""
    out = tmp_path_factory.mktemp("toy-study")
    result = cli("study", "run", str(TOY), "--out", str(out), "--jobs", "2", cwd=out)
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.slow
def test_the_toy_study_runs_shows_its_status_and_writes_results(toy_study: Path) -> None:
    spec = load_spec(TOY).with_output(toy_study)
    assert sorted(p.name for p in spec.summaries_dir.glob("*.json")) == sorted(
        f"{m}-seed{s}.json" for m, s in spec.tasks()
    )
    for name, history in metrics_of(spec.summaries_dir).items():
        assert history["epoch"][-1] <= spec.epochs and "val/map@r" in history, name
    status = cli("study", "status", str(TOY), "--out", str(toy_study), cwd=toy_study)
    assert (
        status.returncode == 0 and "4 finished, 0 running, 0 resumable, 0 missing" in status.stdout
    )
    assert "every run is finished" in status.stdout
    before = {p: p.stat().st_mtime_ns for p in toy_study.rglob("*") if p.is_file()}
    again = cli("study", "run", str(TOY), "--out", str(toy_study), cwd=toy_study)
    assert again.returncode == 0 and "0 run(s) to train" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in toy_study.rglob("*") if p.is_file()} == before
    page = toy_study / "page" / "RESULTS.md"
    results = cli("study", "results", str(TOY), "--from", str(toy_study), "--out", str(page),
                  cwd=toy_study)  # fmt: skip
    assert results.returncode == 0, results.stderr
    text = page.read_text()
    assert "**4 of 4 runs finished**" in text and "| margin-rho0.35 − margin | 2 |" in text
    assert (page.parent / "study" / "toy-curves.png").is_file()
    assert len(page.with_suffix(".csv").read_text().splitlines()) == 5
    missing = cli("study", "status", str(TOY), "--out", str(toy_study / "none"), cwd=toy_study)
    assert "0 finished, 0 running, 0 resumable, 4 missing" in missing.stdout
    assert f"continue with: python -m dml_core study run {TOY} --out {toy_study / 'none'}" in (
        missing.stdout
    )


@pytest.mark.slow
def test_a_runner_killed_mid_study_resumes_to_the_same_summaries(
    toy_study: Path, tmp_path: Path
) -> None:
    """SIGKILL the runner once the second run has evaluated (its trainers die with it), run the
    study again: every summary's metrics equal the uninterrupted study's, bit for bit."""
    spec = load_spec(TOY).with_output(tmp_path)
    command = [sys.executable, "-m", "dml_core", "study", "run", str(TOY), "--out", str(tmp_path)]
    runner = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    second = run_dir(spec, *spec.tasks()[1]) / "events.jsonl"
    deadline = time.monotonic() + 600
    while runner.poll() is None and time.monotonic() < deadline:
        if second.is_file() and '"eval"' in second.read_text():
            break
        time.sleep(0.05)
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    time.sleep(1)  # the trainer gets its SIGKILL from the kernel as the runner dies
    interrupted = len(list(spec.summaries_dir.glob("*.json")))
    assert interrupted < len(spec.tasks())
    for folder in spec.runs_dir.iterdir():
        if folder.is_dir():
            assert task_state(spec, *_task(folder.name)) != "running"
    resumed = cli("study", "run", str(TOY), "--out", str(tmp_path), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert metrics_of(spec.summaries_dir) == metrics_of(toy_study / "summaries")
    shutil.rmtree(spec.runs_dir)


def _task(name: str) -> tuple[str, int]:
    method, seed = name.rsplit("-seed", 1)
    return method, int(seed)


def test_the_sbatch_script_is_shellcheck_clean_and_runs_the_study() -> None:
    script = ROOT / "docs/slurm/study-array.sbatch"
    text = script.read_text()
    assert "python -m dml_core study run" in text and "--array" in text
    assert "DML_STUDY_LAUNCHER" in text and "torchrun" in text
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run(
        ["shellcheck", str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_a_launcher_replaces_the_interpreter() -> None:
    command = ["python", "-m", "dml_core", "train", "--seed", "0"]
    assert executable(command, {}) == [sys.executable, *command[1:]]
    launcher = {"DML_STUDY_LAUNCHER": "torchrun --standalone --nproc_per_node=4"}
    assert executable(command, launcher)[:4] == [
        "torchrun",
        "--standalone",
        "--nproc_per_node=4",
        "-m",
    ]
