"""``events.jsonl``: one JSON object per line, flushed per line so the app can tail a live run.

Every event has ``t`` (Unix time) and ``kind`` in {"start", "step", "epoch", "eval", "done", "error"}
(docs/DESIGN.md §6). A reader tolerates a half-written last line.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

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

    def write(self, kind: str, **fields: Any) -> dict[str, Any]:
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}; valid kinds: {', '.join(EVENT_KINDS)}")
        event = {"t": round(time.time(), 3), "kind": kind, **_finite_or_none(fields)}
        if self._handle is not None:
            self._handle.write(json.dumps(event) + "\n")
            self._handle.flush()
        return event

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def read_events(path: str | Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Events from byte ``offset`` on, and the offset to continue from (skips a partial last line)."""
    path = Path(path)
    if not path.exists():
        return [], offset
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    events = []
    consumed = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        consumed += len(line)
        if line.strip():
            events.append(json.loads(line))
    return events, offset + consumed
