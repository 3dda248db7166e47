"""``events.jsonl``: one JSON object per line, flushed per line so the app can tail a live run.

Every event has ``t`` (Unix time) and ``kind`` in {"start", "step", "epoch", "eval", "done", "error"}
(docs/DESIGN.md §6). A reader waits for a half-written last line and skips lines that are not
events (a crash's torn line, foreign JSON), counting them with file and line; a writer that opens
a file ending in a torn line starts on a fresh line.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from dml_core.io import NotRegularFileError, WriteError, fault_point, open_regular

EVENT_KINDS = ("start", "step", "epoch", "eval", "done", "error")


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    return value


class EventLog:
    """Appends events to ``path`` (None: keeps nothing on disk, e.g. on non-zero DDP ranks)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._handle = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            if _ends_in_torn_line(self.path):
                self._handle.write("\n")

    def write(self, kind: str, **fields: Any) -> dict[str, Any]:
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}; valid kinds: {', '.join(EVENT_KINDS)}")
        event = {"t": round(time.time(), 3), "kind": kind, **_finite_or_none(fields)}
        if self._handle is not None:
            try:
                self._handle.write(json.dumps(event) + "\n")
                self._handle.flush()
            except OSError as error:
                raise WriteError(f"cannot write {self.path}: {error.strerror or error}") from None
            fault_point("event_flushed", kind)
        return event

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _ends_in_torn_line(path: Path) -> bool:
    if path.stat().st_size == 0:
        return False
    with open(path, "rb") as handle:
        handle.seek(-1, 2)
        return handle.read(1) != b"\n"


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def event_problem(event: Any) -> str | None:
    """Why a parsed line is not an event the readers can use (None when it is one)."""
    if not isinstance(event, dict):
        return f"a JSON {type(event).__name__}, not an event object"
    kind = event.get("kind")
    if kind not in EVENT_KINDS:
        return f"kind {kind!r} is not one of {', '.join(EVENT_KINDS)}"
    for key in ("epoch", "step"):
        if key in event and not _is_count(event[key]):
            return f"{key} {event[key]!r} is not an integer"
    if kind in ("step", "epoch", "eval") and not all(k in event for k in ("epoch", "step")):
        return f"a {kind} event without epoch and step"
    if kind == "eval" and not (
        isinstance(event.get("metrics"), dict)
        and all(v is None or isinstance(v, int | float) for v in event["metrics"].values())
    ):
        return "an eval event without a metrics object of numbers"
    if kind == "step" and not (event.get("loss") is None or isinstance(event["loss"], int | float)):
        return "a step event whose loss is not a number"
    for key in ("config", "best"):
        if key in event and event[key] is not None and not isinstance(event[key], dict):
            return f"{key} is not an object"
    return None


def read_events(
    path: str | Path, offset: int = 0, *, skipped: list[str] | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Events from byte ``offset`` on, and the offset to continue from.

    A partial last line is left for the next call. Lines that are not events (not JSON, not an
    object, an unknown kind, fields of the wrong type: ``event_problem``) are skipped; each adds
    ``"<file>:<line>: <why>"`` to ``skipped`` when a list is given. A path that is not a regular
    file (a FIFO would block the read forever) gives no events and, once, ``"<file> is not a
    regular file …: not read"`` in ``skipped``.
    """
    path = Path(path)
    if not path.exists():
        return [], offset
    try:
        handle = open_regular(path)  # a FIFO named events.jsonl must not block a reader
    except NotRegularFileError as error:
        if skipped is not None and f"{error}: not read" not in skipped:
            skipped.append(f"{error}: not read")
        return [], offset
    with handle:
        handle.seek(offset)
        data = handle.read()
    events = []
    consumed = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        consumed += len(line)
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            problem = event_problem(event)
        except (ValueError, RecursionError):
            problem = "not a JSON line (a torn write?)"
        if problem is None:
            events.append(event)
            continue
        if skipped is not None:
            line_number = _line_number(path, offset + consumed - len(line))
            skipped.append(f"{path}:{line_number}: {problem}")
    return events, offset + consumed


def _line_number(path: Path, position: int) -> int:
    """The 1-based line that starts at byte ``position`` (counted only for the rare bad line)."""
    with open_regular(path) as handle:
        return handle.read(position).count(b"\n") + 1
