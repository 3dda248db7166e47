"""A study's tasks (method, seed), their shards (``--shard i/n`` or a Slurm job array), the trainer
command line of each, and the state of each task on disk.

Shard i of n holds every n-th task from the i-th (1-based) of the seed-major task list, so a shard
of a partial study holds whole seeds. Inside a Slurm job array with no ``--shard``, task
``SLURM_ARRAY_TASK_ID`` of an array of ``SLURM_ARRAY_TASK_COUNT`` tasks starting at
``SLURM_ARRAY_TASK_MIN`` runs shard ``ID − MIN + 1`` of ``COUNT``.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from dml_core.study.spec import StudyError, StudySpec
from dml_core.study.summaries import run_dir, summary_path

T = TypeVar("T")
STATES = ("finished", "running", "resumable", "missing")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` with 1 ≤ i ≤ n."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise StudyError(f"--shard expects i/n such as 1/4, got {text!r}") from None
    if not 1 <= index <= count:
        raise StudyError(f"--shard i/n needs 1 <= i <= n, got {text!r}")
    return index, count


def slurm_shard(environ: Mapping[str, str]) -> tuple[int, int] | None:
    """(i, n) of this Slurm array task, None outside an array."""
    if "SLURM_ARRAY_TASK_ID" not in environ:
        return None
    try:
        task = int(environ["SLURM_ARRAY_TASK_ID"])
        first = int(environ.get("SLURM_ARRAY_TASK_MIN", "0"))
        count = int(environ["SLURM_ARRAY_TASK_COUNT"])
    except (KeyError, ValueError):
        raise StudyError(
            "inside a Slurm array, SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN and "
            "SLURM_ARRAY_TASK_COUNT must be integers (or pass --shard i/n)"
        ) from None
    index = task - first + 1
    if not 1 <= index <= count:
        raise StudyError(
            f"Slurm array task {task} is outside its array ({first} … {first + count - 1}); "
            "use a contiguous --array such as 0-7 (or pass --shard i/n)"
        )
    return index, count


def shard(tasks: Sequence[T], index: int, count: int) -> list[T]:
    """Every ``count``-th task starting at the ``index``-th (1-based)."""
    return list(tasks[index - 1 :: count])


def _flag_value(value: Any) -> list[str]:
    if value is None:
        return ["none"]
    if isinstance(value, dict):
        return [json.dumps(value, sort_keys=True)]
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def config_flags(fields: Mapping[str, Any]) -> list[str]:
    """``python -m dml_core train`` flags for TrainConfig fields (``dml_core.config`` parses them)."""
    flags: list[str] = []
    for name, value in fields.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        else:
            flags += [flag, *_flag_value(value)]
    return flags


def train_command(spec: StudySpec, method: str, seed: int, out: Path) -> list[str]:
    """The command line that starts the run (``python`` stands for this interpreter)."""
    preset = ["--preset", spec.preset] if spec.preset else []
    flags = config_flags({**spec.protocol_fields(method), "seed": seed})
    return [
        "python",
        "-m",
        "dml_core",
        "train",
        *preset,
        *flags,
        "--out",
        str(out),
        "--no-progress",
    ]


def resume_command(out: Path) -> list[str]:
    return ["python", "-m", "dml_core", "train", "--resume", str(out), "--no-progress"]


def executable(command: list[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """``command`` with ``python`` replaced by this interpreter, or by the launcher in
    ``DML_STUDY_LAUNCHER`` (e.g. ``torchrun --standalone --nproc_per_node=4``, which runs
    ``-m dml_core train …`` on several GPUs)."""
    launcher = (os.environ if environ is None else environ).get("DML_STUDY_LAUNCHER", "")
    return [*(shlex.split(launcher) or [sys.executable]), *command[1:]]


def is_locked(folder: Path) -> bool:
    """Whether a live trainer holds the run folder's lock (``dml_core.io.FolderLock``)."""
    path = folder / "run.lock"
    if not path.is_file():
        return False
    try:
        import fcntl
    except ImportError:
        return False
    with open(path, encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return False


def resumable(folder: Path) -> bool:
    return (folder / "last.safetensors").is_file() and (folder / "train_state.pt").is_file()


def task_state(spec: StudySpec, method: str, seed: int) -> str:
    """finished (has a summary), running (a trainer holds its folder), resumable (a checkpoint
    to continue from) or missing."""
    if summary_path(spec, method, seed).is_file():
        return "finished"
    folder = run_dir(spec, method, seed)
    if is_locked(folder):
        return "running"
    return "resumable" if resumable(folder) else "missing"
