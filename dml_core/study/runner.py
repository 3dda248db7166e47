"""``study run`` and ``study status``: train a shard's missing runs, resume interrupted ones.

Each run is ``python -m dml_core train`` in its own process (one thread each, ``--jobs`` at a
time) with the study's stopping rule in its config (``early_stop``): the trainer stops itself,
nothing polls it or signals it. A run folder with a checkpoint resumes (``--resume``), one without
is started afresh, a run that is over is only summarised, and a task with a summary is never
trained again. A trainer dies with the runner (``PR_SET_PDEATHSIG`` on Linux), so a killed
runner leaves nothing behind that a second runner would fight over.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dml_core.study.spec import StudySpec
from dml_core.study.summaries import load_runs, run_dir, summary_path, write_summary
from dml_core.study.tasks import (
    executable,
    parse_shard,
    resumable,
    resume_command,
    shard,
    slurm_shard,
    task_state,
    train_command,
)

THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _die_with_parent() -> None:  # pragma: no cover (runs in the child before exec)
    """The child gets SIGKILL when the runner's thread ends (Linux ``prctl``)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def choose_shard(text: str | None, environ: Mapping[str, str]) -> tuple[int, int]:
    """``--shard i/n`` when given, else the Slurm array's, else all tasks (1/1)."""
    if text:
        return parse_shard(text)
    return slurm_shard(environ) or (1, 1)


@dataclass
class Running:
    method: str
    seed: int
    command: list[str]
    process: subprocess.Popen
    log: Any


def start_command(spec: StudySpec, method: str, seed: int) -> list[str]:
    """Resume a run folder with a checkpoint, else start afresh (a folder without one, killed
    before its first checkpoint, is removed: it holds nothing to continue from)."""
    folder = run_dir(spec, method, seed)
    if resumable(folder):
        return resume_command(folder)
    if folder.exists():
        shutil.rmtree(folder)
    return train_command(spec, method, seed, folder)


def _start(spec: StudySpec, method: str, seed: int, env: dict[str, str]) -> Running:
    folder = run_dir(spec, method, seed)
    new = train_command(spec, method, seed, folder)
    command = start_command(spec, method, seed)
    folder.parent.mkdir(parents=True, exist_ok=True)
    log = open(folder.parent / f"{folder.name}.log", "a")  # noqa: SIM115 (closed at its end)
    process = subprocess.Popen(
        executable(command), stdout=log, stderr=log, env=env, preexec_fn=_die_with_parent
    )
    print(f"started {folder.name}: {shlex.join(command[1:])}", flush=True)
    return Running(method, seed, new, process, log)


def run(spec: StudySpec, shard_text: str | None = None, jobs: int = 1) -> int:
    """Train and summarise the shard's missing runs; returns how many of the shard remain."""
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    index, count = choose_shard(shard_text, os.environ)
    load_runs(spec)  # a folder of another protocol, or a summary without a metric: stop here
    tasks = shard(spec.tasks(), index, count)
    pending = []
    for method, seed in tasks:
        state = task_state(spec, method, seed)
        command = train_command(spec, method, seed, run_dir(spec, method, seed))
        if state == "running":
            print(f"{method}-seed{seed}: another process is training it; skipped", flush=True)
        elif state != "finished" and not write_summary(spec, method, seed, command):
            pending.append((method, seed))
    print(f"{spec.name} shard {index}/{count}: {len(pending)} run(s) to train", flush=True)
    env = {**os.environ, **THREADS}
    running: list[Running] = []
    while pending or running:
        while pending and len(running) < jobs:
            running.append(_start(spec, *pending.pop(0), env))
        time.sleep(0.2)
        for item in [r for r in running if r.process.poll() is not None]:
            running.remove(item)
            item.log.close()
            done = write_summary(spec, item.method, item.seed, item.command)
            state = "summarised" if done else "not over (resumes next time)"
            name = f"{item.method}-seed{item.seed}"
            print(f"{name}: exit {item.process.returncode}, {state}", flush=True)
    remaining = [t for t in tasks if not summary_path(spec, *t).is_file()]
    print(f"{spec.name} shard {index}/{count}: {len(remaining)} run(s) remain", flush=True)
    return len(remaining)


def status(spec: StudySpec, out: Path | None = None) -> tuple[dict[str, dict[int, str]], str]:
    """(method → seed → state, the command that continues the study)."""
    states = {
        method: {seed: task_state(spec, method, seed) for seed in m.seeds}
        for method, m in spec.methods.items()
    }
    command = ["python", "-m", "dml_core", "study", "run", str(spec.path)]
    if out is not None:
        command += ["--out", str(out)]
    return states, shlex.join(command)


def status_lines(spec: StudySpec, out: Path | None = None) -> list[str]:
    states, command = status(spec, out)
    counts = {s: sum(v == s for seeds in states.values() for v in seeds.values()) for s in
              ("finished", "running", "resumable", "missing")}  # fmt: skip
    width = max(len(m) for m in states)
    lines = [
        f"study {spec.name} ({spec.path}): " + ", ".join(f"{n} {s}" for s, n in counts.items())
    ]
    for method, seeds in states.items():
        cells = "  ".join(f"seed {seed}: {state}" for seed, state in seeds.items())
        lines.append(f"  {method:<{width}}  {cells}")
    if counts["finished"] < sum(counts.values()):
        lines.append(f"continue with: {command}")
    else:
        lines.append("every run is finished")
    return lines
