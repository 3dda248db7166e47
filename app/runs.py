"""Background training runs: launch ``python -m dml_core train``, stop it, tail its events.

A launched run writes ``<runs folder>/<name>/`` (the trainer's ``events.jsonl``, checkpoints,
snapshots) plus ``app.pid`` (JSON: pid and command, written by :func:`launch_run`) and
``output.log``. A run is *running* while its events hold no ``done``/``error`` event and the pid in
``app.pid`` is a live ``dml_core`` process; that is how a reloaded page reattaches. A run whose
process died before writing any event *failed at launch*; its error is the first error line of
``output.log``; :func:`launch_problem` catches a bad configuration or missing data before a launch.
Stop = SIGINT, which the trainer turns into a clean stop that keeps ``last.safetensors``; it is
recorded in ``app.stop`` so the run reads *stopping…* from the click until its ``done`` event.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.settings import CURVE_KEYS, REPO_ROOT, runs_dir
from dml_core.engine.events import read_events
from dml_core.io import NotRegularFileError, atomic_write_json, open_regular

PID_FILE = "app.pid"
STOP_FILE = "app.stop"
STOPPING = "stopping…"
LOG_FILE = "output.log"
EVENTS_FILE = "events.jsonl"
RUN_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")
FINAL_KINDS = ("done", "error")
RANKED_METRIC = re.compile(r"/rho@(\d+)$")
"""ρ@k: defined only for embeddings with more than k dimensions."""

_children: dict[int, subprocess.Popen[bytes]] = {}
"""Runs this process launched, so their exit status can be collected (no zombies)."""


def train_command(options: dict[str, Any], out_dir: Path, preset: str | None = None) -> list[str]:
    """The argv of ``python -m dml_core train``: one ``--flag value`` per TrainConfig field given.

    Booleans become ``--flag``/``--no-flag``, lists repeat values, dicts are passed as JSON and
    None as ``none``.
    """
    argv = [sys.executable, "-m", "dml_core", "train", "--out", str(out_dir), "--no-progress"]
    if preset:
        argv += ["--preset", preset]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, list):
            argv += [flag, *map(str, value)]
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value)]
        else:
            argv += [flag, "none" if value is None else str(value)]
    return argv


def launch_problem(options: dict[str, Any], preset: str | None = None) -> str | None:
    """Why ``python -m dml_core train`` with these options would fail before training, in one
    line (a bad value, a dataset that is not at its root), or None: the run's config as the CLI
    builds it (preset, then options) and its train and test splits, built here (no model)."""
    from dml_core.config import TrainConfig
    from dml_core.data.splits import build_split
    from dml_core.presets import preset as preset_values

    try:
        config = TrainConfig.from_dict({**(preset_values(preset) if preset else {}), **options})
        for split in ("train", "test"):
            build_split(config, split)
    except (ValueError, TypeError, KeyError, OSError) as error:
        lines = str(error).strip().splitlines()
        return lines[0] if lines else type(error).__name__
    return None


def launch_run(
    name: str, options: dict[str, Any], preset: str | None = None, root: Path | None = None
) -> Path:
    """Start a run in ``<root>/<name>`` as a subprocess; returns the run directory."""
    if not RUN_NAME_PATTERN.match(name):
        raise ValueError(
            f"run name {name!r} must be letters, digits, '.', '_' or '-' (at most 81 characters)"
        )
    run_dir = (root or runs_dir()) / name
    refusal = f"{run_dir} already holds a run; pick another name"
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise FileExistsError(refusal)
    run_dir.mkdir(parents=True, exist_ok=True)
    command = train_command(options, run_dir, preset)
    try:  # creating output.log claims the folder atomically: of two launches, one wins
        log = open(run_dir / LOG_FILE, "xb")  # noqa: SIM115 (closed below)
    except FileExistsError:
        raise FileExistsError(refusal) from None
    with log:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _children[process.pid] = process
    atomic_write_json(run_dir / PID_FILE, {"pid": process.pid, "command": command})
    return run_dir


def read_pid(run_dir: Path) -> int | None:
    try:
        with open_regular(run_dir / PID_FILE) as handle:  # never block on a FIFO
            return int(json.loads(handle.read(4096))["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def process_alive(pid: int) -> bool:
    """True for a live (not zombie) ``dml_core`` process with this pid."""
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command_line = (proc / "cmdline").read_bytes()
        except OSError:
            return False
        return state != "Z" and b"dml_core" in command_line
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def exit_status(pid: int) -> int | None:
    """The exit status of a run this process launched, once it has exited (else None)."""
    child = _children.get(pid)
    return None if child is None else child.poll()


@dataclass
class RunState:
    """What the app knows about one run directory, updated incrementally by :func:`refresh`."""

    run_dir: Path
    offset: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    unreadable: str | None = None
    """Why ``events.jsonl`` could not be read past ``offset`` (None while it reads fine)."""
    skipped: list[str] = field(default_factory=list)
    """``"<file>:<line>: <why>"`` for each line of ``events.jsonl`` that is not an event."""

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def finished(self) -> dict[str, Any] | None:
        return next((e for e in reversed(self.events) if e["kind"] in FINAL_KINDS), None)

    @property
    def running(self) -> bool:
        if self.finished is not None:
            return False
        pid = read_pid(self.run_dir)
        return pid is not None and process_alive(pid)

    def stop_sent(self) -> bool:
        """Whether :func:`stop_run` stopped this folder's current process (``app.stop`` names
        the pid in ``app.pid``)."""
        try:
            with open_regular(self.run_dir / STOP_FILE) as handle:
                stopped_pid = json.loads(handle.read(4096))["pid"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return stopped_pid == read_pid(self.run_dir)

    @property
    def stopping(self) -> bool:
        """Running, and a stop was sent to this process: it is finishing its step and writing
        ``last``."""
        return self.running and self.stop_sent()

    @property
    def status(self) -> str:
        """``running``, ``stopping…``, ``finished``, ``stopped`` (or another done reason),
        ``error``, ``failed at launch``, ``stopped before training`` (a Stop that came before
        the first event: not a failure) or ``ended without a done event``."""
        final = self.finished
        if final is not None:
            return "error" if final["kind"] == "error" else final.get("reason", "finished")
        if self.running:
            return STOPPING if self.stopping else "running"
        if self.events:
            return "ended without a done event"
        return "stopped before training" if self.stop_sent() else "failed at launch"

    @property
    def failed(self) -> bool:
        return self.status in ("error", "failed at launch")

    def error_line(self) -> str:
        """The first line of the run's error: its ``error`` event, else from ``output.log``."""
        final = self.finished
        if final is not None and final["kind"] == "error" and final.get("message"):
            return str(final["message"]).strip().splitlines()[0]
        return launch_error(self.run_dir)

    @property
    def latest_eval(self) -> dict[str, Any] | None:
        return next((e for e in reversed(self.events) if e["kind"] == "eval"), None)

    @property
    def latest_snapshot(self) -> Path | None:
        for event in reversed(self.events):
            if event["kind"] == "eval" and event.get("snapshot"):
                return self.run_dir / event["snapshot"]
        return None

    def config(self) -> dict[str, Any] | None:
        start = next((e for e in self.events if e["kind"] == "start"), None)
        return start.get("config") if start else None

    def skipped_note(self) -> str | None:
        """``"N lines skipped (first: <file>:<line>: <why>)"``, or None when none was."""
        if not self.skipped:
            return None
        count = len(self.skipped)
        return f"{count} line{'s' if count > 1 else ''} skipped (first: {self.skipped[0]})"


def refresh(state: RunState) -> RunState:
    """Read the events appended since the last call (tailing ``events.jsonl``).

    Lines that are not events (torn JSON, not an object, no known ``kind``) are skipped and
    listed in ``state.skipped``.
    """
    try:
        new_events, state.offset = read_events(
            state.run_dir / EVENTS_FILE, state.offset, skipped=state.skipped
        )
    except (OSError, ValueError) as error:
        state.unreadable = f"{state.run_dir / EVENTS_FILE}: {error}"
        return state
    state.unreadable = None
    state.events.extend(new_events)
    return state


def discover_runs(root: Path | None = None) -> list[Path]:
    """Run folders under ``root`` (with ``events.jsonl`` or the app's ``app.pid``), newest first."""
    base = root or runs_dir()
    if not base.is_dir():
        return []
    found = {p.parent for pattern in (EVENTS_FILE, PID_FILE) for p in base.glob(f"*/{pattern}")}

    def modified(run: Path) -> float:
        stamps = [
            (run / name).stat().st_mtime
            for name in (EVENTS_FILE, PID_FILE, LOG_FILE)
            if (run / name).exists()
        ]
        return max(stamps, default=0.0)

    return sorted(found, key=modified, reverse=True)


def running_runs(root: Path | None = None) -> list[Path]:
    """Runs still going: no done/error event and a live pid file (reattach after a reload)."""
    return [run for run in discover_runs(root) if refresh(RunState(run)).running]


def stop_run(run_dir: Path) -> bool:
    """Send SIGINT to the run's process (clean stop, checkpoint kept) and record it in
    ``app.stop``, so every page shows the run *stopping…* until it ends; False if it is not
    running."""
    pid = read_pid(run_dir)
    if pid is None or not process_alive(pid):
        return False
    atomic_write_json(run_dir / STOP_FILE, {"pid": pid, "t": time.time()})
    os.kill(pid, signal.SIGINT)
    return True


def undefined_metrics(config: dict[str, Any] | None) -> set[str]:
    """Curve metrics a run's embedding cannot have: ρ@k needs more than k dimensions."""
    dimension = (config or {}).get("embed_dim")
    if not isinstance(dimension, int):
        return set()
    undefined = set()
    for key in CURVE_KEYS:
        match = RANKED_METRIC.search(key)
        if match and dimension <= int(match.group(1)):
            undefined.add(key)
    return undefined


Series = tuple[list[float], list[float]]


def curves(events: list[dict[str, Any]]) -> dict[str, Series | None]:
    """``{"loss": (steps, losses), metric: (epochs, values)}`` from a run's events; a metric the
    run's embedding cannot have (:func:`undefined_metrics`) maps to None."""
    start = next((e for e in events if e["kind"] == "start"), {})
    undefined = undefined_metrics(start.get("config"))
    series: dict[str, Series | None] = {"loss": ([], [])}
    for key in CURVE_KEYS:
        series[key] = None if key in undefined else ([], [])
    for event in events:
        if event["kind"] == "step" and event.get("loss") is not None:
            series["loss"][0].append(event["step"])
            series["loss"][1].append(event["loss"])
        elif event["kind"] == "eval":
            metrics = event.get("metrics") or {}
            for key in CURVE_KEYS:
                values = series[key]
                if values is not None and isinstance(metrics.get(key), (int, float)):
                    values[0].append(event["epoch"])
                    values[1].append(metrics[key])
    return series


def output_tail(run_dir: Path, max_bytes: int = 4000) -> str:
    """The end of the run's captured stdout/stderr (for error messages)."""
    path = run_dir / LOG_FILE
    if not path.exists():
        return ""
    try:
        handle = open_regular(path)  # a FIFO would block the page forever
    except NotRegularFileError as error:
        return str(error)
    with handle:
        handle.seek(max(0, path.stat().st_size - max_bytes))
        return handle.read().decode("utf-8", errors="replace")


def launch_error(run_dir: Path) -> str:
    """The first line of the error in ``output.log``: the CLI's ``error: …`` line, else the
    exception line that ends a traceback, else the log's last line."""
    lines = [line.strip() for line in output_tail(run_dir).splitlines() if line.strip()]
    if not lines:
        return "the process exited without output"
    for line in lines:
        if line.startswith("error:"):
            return line
    if any(line.startswith("Traceback") for line in lines):
        exceptions = [
            line for line in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", line)
        ]
        if exceptions:
            return exceptions[-1]
    return lines[-1]
