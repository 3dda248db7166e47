"""``python -m dml_core report``: mean ± std over seeds per method, under two protocols.

- **paper**: the paper's reporting: each test retrieval metric at its own best epoch; embedding-space
  metrics (ρ@2, π_ratio, …) at the epoch of the best test Recall@1.
- **fair**: every metric at one epoch chosen without test labels: the epoch of the run's own
  ``--best-metric`` on validation classes when it held them out (``--val-classes``; the epoch of
  its ``best.safetensors``), else the last epoch.

Both pick epochs with ``dml_core.engine.stopping.selected_row`` (best value, ties to the earliest,
NaN never best), the trainer's own rule.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dml_core.config import TrainConfig, load_config_file
from dml_core.engine.events import read_events
from dml_core.engine.stopping import selected_row
from dml_core.metrics.direction import lower_is_better

DEFAULT_METRICS = (
    "test/recall@1",
    "test/recall@4",
    "test/map@r",
    "test/nmi",
    "train/rho@2",
    "train/pi_ratio",
)
PROTOCOLS = ("paper", "fair")


@dataclass
class Run:
    path: Path
    config: dict[str, Any]
    history: list[dict[str, float]]
    values: dict[str, dict[str, float]] = field(default_factory=dict)
    """protocol → metric → value"""


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run directories (holding config.json and events.jsonl) at or one level below each path."""
    found: list[Path] = []
    for path in map(Path, paths):
        if (path / "config.json").is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p.parent for p in path.glob("*/config.json")))
        else:
            raise FileNotFoundError(f"{path} is neither a run directory nor a folder of runs")
    if not found:
        raise ValueError(
            f"no run directories (with config.json) under {', '.join(map(str, paths))}"
        )
    return found


def load_run(path: Path) -> Run:
    """A run's config and its evaluation history from ``events.jsonl``: one row per epoch (a
    resumed run's repeat of an epoch replaces the first), lines that are not events skipped with
    one ``EventLogWarning`` per file that counts them and names the first."""
    # Through TrainConfig, so runs written before a field existed get its default and group
    # with newer runs of the same settings.
    config = TrainConfig.from_dict(load_config_file(path / "config.json")).to_dict()
    skipped: list[str] = []
    events, _ = read_events(path / "events.jsonl", skipped=skipped)
    if skipped:
        warnings.warn(
            f"skipped {len(skipped)} line(s) of {path / 'events.jsonl'} that are not events "
            f"(first: {skipped[0]})",
            EventLogWarning,
            stacklevel=2,
        )
    by_epoch = {
        e["epoch"]: {"epoch": e["epoch"], **e["metrics"]}
        for e in events
        if e["kind"] == "eval" and e["metrics"]
    }
    history = [by_epoch[epoch] for epoch in sorted(by_epoch)]
    return Run(path, config, history)


class EventLogWarning(UserWarning):
    """Some lines of an ``events.jsonl`` were not events and were skipped."""


def _best_epoch_row(history: list[dict[str, float]], metric: str) -> dict[str, float]:
    """The selected evaluation of ``metric`` (``selected_row``), else the last one."""
    return selected_row(history, metric) or history[-1]


def protocol_values(
    run: Run, metrics: list[str], selection_metric: str | None = None
) -> dict[str, dict]:
    """``{"paper": {...}, "fair": {...}}`` metric values of one run (NaN where absent; the key
    ``epoch`` gives each protocol's epoch). The fair epoch is selected on ``selection_metric``
    (default: the run's own ``best_metric``) on the validation split."""
    if not run.history:
        return {p: dict.fromkeys(metrics, math.nan) for p in PROTOCOLS}
    paper = {}
    at_best_test = _best_epoch_row(run.history, "test/recall@1")
    for metric in metrics:
        if metric.startswith("test/") and not lower_is_better(metric):
            paper[metric] = _best_epoch_row(run.history, metric).get(metric, math.nan)
        else:
            paper[metric] = at_best_test.get(metric, math.nan)
    selection = selection_metric or run.config.get("best_metric") or "recall@1"
    has_val = any(k.startswith("val/") for k in run.history[-1])
    fair_row = _best_epoch_row(run.history, f"val/{selection}") if has_val else run.history[-1]
    fair = {metric: fair_row.get(metric, math.nan) for metric in metrics}
    return {"paper": paper, "fair": fair}


def group_name(config: dict[str, Any], varying: list[str]) -> str:
    if not varying:
        return f"{config['loss']}"
    return ", ".join(f"{key}={config[key]}" for key in varying)


def _varying_fields(runs: list[Run]) -> list[str]:
    keys = sorted({k for run in runs for k in run.config} - {"seed"})
    return [
        k for k in keys if len({json.dumps(run.config.get(k), sort_keys=True) for run in runs}) > 1
    ]


def summarise(
    paths: list[str | Path], metrics: list[str] | None = None
) -> tuple[list[dict], list[Run]]:
    """One row per (group, protocol) with mean/std/n of each metric, and the runs themselves."""
    metrics = list(metrics or DEFAULT_METRICS)
    runs = [load_run(p) for p in find_runs(paths)]
    for run in runs:
        run.values = protocol_values(run, metrics)
    varying = _varying_fields(runs)
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(group_name(run.config, varying), []).append(run)
    rows = []
    for protocol in PROTOCOLS:
        for name, members in groups.items():
            row: dict[str, Any] = {"group": name, "protocol": protocol, "seeds": len(members)}
            for metric in metrics:
                values = np.array([m.values[protocol][metric] for m in members], dtype=float)
                values = values[np.isfinite(values)]
                row[f"{metric} mean"] = float(values.mean()) if len(values) else math.nan
                row[f"{metric} std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            rows.append(row)
    return rows, runs


def to_markdown(rows: list[dict], metrics: list[str]) -> str:
    lines = []
    for protocol in PROTOCOLS:
        title = (
            "paper protocol (best epoch per metric, on test)"
            if protocol == "paper"
            else ("fair protocol (epoch selected on validation classes, else the last epoch)")
        )
        lines += [f"### {title}", "", "| method | seeds | " + " | ".join(metrics) + " |"]
        lines.append("|" + "---|" * (len(metrics) + 2))
        for row in (r for r in rows if r["protocol"] == protocol):
            cells = [f"{row[f'{m} mean']:.4f} ± {row[f'{m} std']:.4f}" for m in metrics]
            lines.append(f"| {row['group']} | {row['seeds']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
