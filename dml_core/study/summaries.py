"""One summary JSON per finished run of a study, and loading them back as ``RunSummary``.

A summary is all the page needs (a few KB): the run's config and command, why it stopped, the
study file's protocol hash (``StudySpec.protocol_hash``), the dml_core version, the backbone's
SHA-256 and the history of the kept metrics (docs/study/README.md has the fields). Format 3 is
written; format 2 (the summaries of the first glyphs study, written before study files existed)
loads unchanged and counts as its own protocol. Loading refuses, in one line: a method with
summaries of two protocols, summaries of a protocol the study file no longer describes, runs from
different backbones, and a summary without the selection or target metric.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dml_core.engine.events import read_events
from dml_core.engine.stopping import last_quarter_gain, selected_row
from dml_core.io import atomic_write_json
from dml_core.metrics.direction import lower_is_better
from dml_core.study.spec import StudyError, StudySpec

FORMAT = 3
LEGACY_FORMATS = (2,)
KEPT_METRICS = (
    "val/map@r",
    "val/recall@1",
    "test/recall@1",
    "test/recall@4",
    "test/map@r",
    "test/nmi",
    "train/recall@1",
    "train/rho@2",
    "train/pi_ratio",
    "train/pi_intra",
    "train/pi_inter",
)
"""Metrics a summary keeps per evaluation (those the run recorded), besides the study's own."""


@dataclass
class RunSummary:
    """One finished run as the page sees it: values at the epoch selected on validation."""

    method: str
    seed: int
    stop: str
    epochs: int
    selected_epoch: int
    gain: float
    seconds: float
    history: dict[str, list[float | None]]
    selected: dict[str, float]
    backbone: str | None = None
    run_dir: Path | None = None
    protocol: str | None = None
    """The study file's protocol hash (None: a format-2 summary, from before study files)."""
    path: Path | None = None

    def series(self, metric: str) -> list[float]:
        return [math.nan if v is None else v for v in self.history.get(metric, [])]


def summary_path(spec: StudySpec, method: str, seed: int) -> Path:
    return spec.summaries_dir / f"{method}-seed{seed}.json"


def run_dir(spec: StudySpec, method: str, seed: int) -> Path:
    return spec.runs_dir / f"{method}-seed{seed}"


def load_summary(path: Path, selection: str = "val/map@r") -> RunSummary:
    """One summary file; the selected evaluation is ``selected_row`` of ``selection``."""
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise StudyError(f"{path}: not a readable summary ({error})") from None
    kind = document.get("format")
    if kind != FORMAT and kind not in LEGACY_FORMATS:
        raise StudyError(f"{path}: summary format {kind!r}, expected {FORMAT} (or 2)")
    history = document["history"]
    rows = [
        {m: (math.nan if history[m][i] is None else history[m][i]) for m in history}
        for i in range(len(history["epoch"]))
    ]
    if not rows:
        raise StudyError(f"{path}: the summary holds no evaluation")
    if selection not in history:
        raise StudyError(f"{path}: the summary has no {selection} (the selection metric)")
    selected = selected_row(rows, selection) or rows[-1]
    return RunSummary(
        method=document["method"],
        seed=int(document["seed"]),
        stop=document["stop"],
        epochs=int(rows[-1]["epoch"]),
        selected_epoch=int(selected["epoch"]),
        gain=last_quarter_gain(
            rows,
            selection,
            lower_is_better=lower_is_better(selection),
            from_recovery=bool(document.get("stopping_rule", {}).get("from_recovery", False)),
        ),
        seconds=float(document.get("train_seconds", math.nan)),
        history=history,
        selected=dict(selected),
        backbone=document.get("pretrained_sha256"),
        protocol=document.get("protocol_hash"),
        path=path,
    )


def load_runs(spec: StudySpec, folder: str | Path | None = None) -> dict[str, list[RunSummary]]:
    """method → its summarised runs sorted by seed, in the study file's method order (summaries of
    methods the file does not name are left out); ``folder`` defaults to the spec's summaries."""
    folder = Path(folder) if folder is not None else spec.summaries_dir
    by_method: dict[str, list[RunSummary]] = {m: [] for m in spec.methods}
    backbones: dict[str | None, str] = {}
    for path in sorted(folder.glob("*.json")):
        summary = load_summary(path, spec.selection_metric)
        if summary.method not in by_method:
            continue
        if spec.comparisons.target not in summary.history:
            raise StudyError(f"{path}: the summary has no {spec.comparisons.target}")
        by_method[summary.method].append(summary)
        backbones.setdefault(summary.backbone, path.name)
        directory = run_dir(spec, summary.method, summary.seed)
        summary.run_dir = directory if directory.is_dir() else None
    if len(backbones) > 1:
        raise StudyError(
            f"{folder}: runs started from different backbones (e.g. "
            + ", ".join(backbones.values())
            + "); remove the summaries of the old one"
        )
    for method, runs in by_method.items():
        check_protocol(spec, method, runs)
    return {m: sorted(runs, key=lambda r: r.seed) for m, runs in by_method.items()}


def _protocol_name(protocol: str | None) -> str:
    return protocol or "format 2 (no hash)"


def check_protocol(spec: StudySpec, method: str, runs: list[RunSummary]) -> None:
    """One protocol per method, the one the study file describes (format 2 is accepted alone)."""
    protocols = {r.protocol: r.path for r in runs}
    if len(protocols) > 1:
        a, b = list(protocols.items())[:2]
        raise StudyError(
            f"{spec.summaries_dir}: {method} has summaries of two protocols "
            f"({a[1].name}: {_protocol_name(a[0])}, {b[1].name}: {_protocol_name(b[0])}); "
            "keep one study per folder"
        )
    expected = spec.protocol_hash(method)
    stale = [(p, path) for p, path in protocols.items() if p is not None and p != expected]
    if stale:
        raise StudyError(
            f"{stale[0][1]}: summary of protocol {stale[0][0]}, but {spec.path} now describes "
            f"{method} as protocol {expected}; move the old summaries away or restore the file"
        )


# --- writing a summary from a run folder --------------------------------------------------------


def eval_history(directory: Path) -> list[dict[str, Any]]:
    """Evaluation rows from ``events.jsonl``, one per epoch (a resumed run's repeat wins)."""
    events, _ = read_events(directory / "events.jsonl")
    rows: dict[int, dict[str, Any]] = {}
    for event in events:
        if event["kind"] == "eval" and event.get("metrics"):
            rows[event["epoch"]] = {"epoch": event["epoch"], **event["metrics"]}
    return [rows[epoch] for epoch in sorted(rows)]


def end_reason(directory: Path) -> str | None:
    """ "converged" (the trainer's early stop), "epoch cap" (it trained every epoch), else None
    (not over: interrupted, or stopped by a signal)."""
    if not (directory / "events.jsonl").is_file():
        return None
    events, _ = read_events(directory / "events.jsonl")
    reasons = [e.get("reason") for e in events if e["kind"] == "done"]
    last = reasons[-1] if reasons else None
    return {"converged": "converged", "finished": "epoch cap"}.get(last)


def columns(history: list[dict[str, Any]], metrics: list[str]) -> dict[str, list[Any]]:
    """The summary's history: one list per metric (5 significant digits), epoch first."""
    kept = ["epoch", *(m for m in metrics if any(m in row for row in history))]

    def compact(value: Any) -> Any:
        if value is None or not math.isfinite(value):
            return None
        return value if isinstance(value, int) else float(f"{value:.5g}")

    return {m: [compact(row.get(m)) for row in history] for m in kept}


def file_sha256(path: str | None) -> str | None:
    """SHA-256 of the pretrained weights a run started from (None from scratch)."""
    if not path or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def kept_metrics(spec: StudySpec) -> list[str]:
    extra = [spec.selection_metric, spec.comparisons.target, *spec.comparisons.correlations]
    extra += list(spec.comparisons.context_metrics)
    return list(dict.fromkeys([*KEPT_METRICS, *extra]))


def write_summary(spec: StudySpec, method: str, seed: int, command: list[str]) -> bool:
    """Summarise a run that is over (atomically); False when it is not over."""
    directory = run_dir(spec, method, seed)
    reason = end_reason(directory)
    if reason is None:
        return False
    events, _ = read_events(directory / "events.jsonl")
    seconds = sum(e.get("seconds", 0.0) for e in events if e["kind"] == "epoch")
    config = json.loads((directory / "config.json").read_text())
    summary = {
        "format": FORMAT,
        "regime": spec.name,
        "method": method,
        "seed": seed,
        "stop": reason,
        "stopping_rule": {
            "metric": spec.selection_metric,
            "min_epochs": spec.stopping.min_epochs,
            "last_fraction": spec.stopping.last_fraction,
            "min_delta": spec.stopping.min_delta,
            "from_recovery": spec.stopping.from_recovery,
        },
        "epoch_cap": spec.cap(method),
        "train_seconds": round(seconds, 1),
        "command": shlex.join(command),
        "config": config,
        "pretrained_sha256": file_sha256(config.get("pretrained")),
        "protocol_hash": spec.protocol_hash(method),
        "dml_core_version": spec.version,
        "history": columns(eval_history(directory), kept_metrics(spec)),
    }
    atomic_write_json(summary_path(spec, method, seed), summary)
    return True
