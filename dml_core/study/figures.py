"""Beside a study's page: every run's validation curve (PNG) and every run at its selected epoch (CSV).

The curves: one panel per method, each seed's selection metric per evaluation, the selected epoch
as a dot; solid lines converged by the rule, dashed ones stopped at the epoch cap. The PNG holds no
matplotlib version, so the same summaries give the same bytes.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from dml_core.io import atomic_write, atomic_write_bytes
from dml_core.study.spec import StudySpec
from dml_core.study.summaries import RunSummary

PNG_OPTIONS = {"format": "png", "dpi": 72, "metadata": {"Software": None}}
METRIC_TITLES = {"val/map@r": "val MAP@R", "val/recall@1": "val R@1"}


def metric_title(metric: str) -> str:
    return METRIC_TITLES.get(metric, metric)


def curves_figure(spec: StudySpec, by_method: dict[str, list[RunSummary]]) -> Figure:
    metric = spec.selection_metric
    title = metric_title(metric)
    methods = [m for m, runs in by_method.items() if runs]
    columns = 3
    rows = math.ceil(len(methods) / columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(11, 2.6 * rows), sharex=True, sharey=True, squeeze=False
    )
    for panel, method in itertools.zip_longest(axes.flat, methods):
        if method is None:
            panel.set_visible(False)
            continue
        for r in by_method[method]:
            epochs, values = r.series("epoch"), r.series(metric)
            style = "-" if r.stop == "converged" else "--"
            (line,) = panel.plot(epochs, values, style, linewidth=1.2, label=f"seed {r.seed}")
            panel.plot([r.selected_epoch], [r.selected[metric]], "o", color=line.get_color())
        panel.set_title(method, fontsize=10)
        panel.grid(alpha=0.3)
    for panel in axes[-1]:
        panel.set_xlabel("epoch")
    for panel in axes[:, 0]:
        panel.set_ylabel(title)
    axes.flat[0].legend(fontsize=7, loc="lower right")
    figure.suptitle(
        f"Regime {spec.name}: validation MAP@R per evaluation (dot: selected epoch; dashed: "
        "stopped at the epoch cap)"
        if metric == "val/map@r"
        else f"Study {spec.name}: {title} per evaluation (dot: selected epoch; dashed: "
        "stopped at the epoch cap)",
        fontsize=11,
    )
    figure.tight_layout()
    return figure


def write_curves(spec: StudySpec, by_method: dict[str, list[RunSummary]], path: Path) -> Path:
    figure = curves_figure(spec, by_method)
    atomic_write(path, lambda temporary: figure.savefig(temporary, **PNG_OPTIONS))
    plt.close(figure)
    return path


def runs_csv(studies: list[tuple[StudySpec, dict[str, list[RunSummary]]]]) -> str:
    """One row per run: study, method, seed, stop, epochs, selected epoch, last-quarter gain,
    minutes, then every metric of any summary at the selected epoch (empty where absent)."""
    metrics = sorted(
        {m for _, runs in studies for group in runs.values() for r in group for m in r.history}
        - {"epoch"}
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    head = ["study", "method", "seed", "stop", "epochs", "selected_epoch", "gain", "minutes"]
    writer.writerow(head + metrics)
    for spec, runs in studies:
        for group in runs.values():
            for r in group:
                values = [r.selected.get(m, math.nan) for m in metrics]
                cells = ["" if not math.isfinite(v) else repr(float(v)) for v in values]
                gain = "" if math.isnan(r.gain) else repr(r.gain)
                row = [spec.name, r.method, r.seed, r.stop, r.epochs, r.selected_epoch, gain]
                writer.writerow([*row, f"{r.seconds / 60:.2f}", *cells])
    return buffer.getvalue()


def write_csv(studies: list[tuple[StudySpec, dict[str, list[RunSummary]]]], path: Path) -> Path:
    return atomic_write_bytes(path, runs_csv(studies).encode())
