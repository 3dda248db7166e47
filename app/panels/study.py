"""What the Study page shows, from summaries and event logs only (nothing trains, no torch here).

A *source* is a study file (the repository's ``studies/**/*.yaml`` and ``*.yaml`` up to three
folders deep under the runs folder) or a folder of runs (a folder under the runs folder with at
least two run directories). Loading is cached by file identity: a study's file and its summaries'
(path, mtime, size), a folder's run files likewise, so a rewritten summary is read again and an
unchanged study is not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from app.format import metric_text
from app.settings import REPO_ROOT, runs_dir
from dml_core.report import find_runs, load_run
from dml_core.study import load_runs, load_spec
from dml_core.study.explain import (
    TARGET,
    Explanation,
    Point,
    explain,
    label,
    points_from_folder,
    points_from_summaries,
)
from dml_core.study.page import section

CHECKPOINTS = ("best.safetensors", "last.safetensors")
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip


@dataclass(frozen=True)
class Source:
    label: str
    kind: str  # "study" or "runs"
    path: str


@dataclass
class Curve:
    """One run's selection metric per evaluation and its selected epoch."""

    method: str
    seed: int
    epochs: list[float]
    values: list[float]
    selected_epoch: int | None
    checkpoint: str | None


@dataclass
class StudyView:
    title: str
    kind: str
    markdown: str
    table: pd.DataFrame | None
    selection: str
    curves: list[Curve]
    points: list[Point] = field(default_factory=list)
    note: str = ""


def _label(path: Path) -> str:
    for root, name in ((runs_dir(), "runs"), (REPO_ROOT, "")):
        try:
            relative = path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
        return f"{name}/{relative}" if name else relative
    return str(path)


def discover_sources() -> list[Source]:
    """Study files first (the repository's, then the runs folder's), then folders of runs."""
    studies = (
        sorted((REPO_ROOT / "studies").rglob("*.yaml")) if (REPO_ROOT / "studies").is_dir() else []
    )
    root = runs_dir()
    found = [Source(_label(p), "study", str(p)) for p in studies]
    if root.is_dir():
        for depth in range(3):
            pattern = "/".join(["*"] * depth + ["*.yaml"])
            found += [Source(_label(p), "study", str(p)) for p in sorted(root.glob(pattern))]
        counts: dict[Path, int] = {}
        for depth in range(1, 4):
            for config in root.glob("/".join(["*"] * depth + ["config.json"])):
                if (config.parent / "events.jsonl").is_file():
                    counts[config.parent.parent] = counts.get(config.parent.parent, 0) + 1
        for folder in sorted(f for f, n in counts.items() if n >= 2):
            found.append(Source(f"{_label(folder)}/ ({counts[folder]} runs)", "runs", str(folder)))
    return found


def _version(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return (str(path), stat.st_mtime_ns, stat.st_size)


def signature(source: Source) -> tuple:
    """The identity of everything the source's view is read from."""
    path = Path(source.path)
    if source.kind == "study":
        try:
            spec = load_spec(path)
        except ValueError:
            return (_version(path),)
        files = sorted(spec.summaries_dir.glob("*.json")) if spec.summaries_dir.is_dir() else []
        runs = spec.runs_dir.is_dir() and tuple(sorted(p.name for p in spec.runs_dir.iterdir()))
        return (_version(path), runs, *map(_version, files))
    files = sorted(path.glob("*/events.jsonl")) + sorted(path.glob("*/config.json"))
    return tuple(map(_version, files))


def _checkpoint(run_dir: Path | None) -> str | None:
    if run_dir is None:
        return None
    return next((str(run_dir / n) for n in CHECKPOINTS if (run_dir / n).is_file()), None)


def _study_view(path: str) -> StudyView:
    spec = load_spec(path)
    by_method = load_runs(spec)
    lines = section(spec, by_method)
    if "### Every run" in lines:  # the page draws its own curves
        lines = lines[: lines.index("### Every run")]
    lines = [line for line in lines if not line.startswith("## Regime")]
    curves = [
        Curve(
            r.method,
            r.seed,
            r.series("epoch"),
            r.series(spec.selection_metric),
            r.selected_epoch,
            _checkpoint(r.run_dir),
        )
        for runs in by_method.values()
        for r in runs
    ]
    return StudyView(
        title=f"Study `{spec.name}`",
        kind="study",
        markdown="\n".join(lines),
        table=None,
        selection=spec.selection_metric,
        curves=curves,
        points=points_from_summaries(by_method),
    )


def _folder_view(path: str) -> StudyView:
    points = points_from_folder(path)
    by_dir = {str(p.run_dir): p for p in points}
    curves, selections = [], set()
    for run_path in find_runs([path]):
        run = load_run(run_path)
        point = by_dir.get(str(run_path))
        if point is None:
            continue
        best = run.config.get("best_metric") or "recall@1"
        has_val = any(k.startswith("val/") for row in run.history for k in row)
        metric = f"val/{best}" if has_val else TARGET
        selections.add(metric)
        curves.append(
            Curve(
                point.method,
                point.seed,
                [row["epoch"] for row in run.history],
                [row.get(metric, math.nan) for row in run.history],
                point.epoch,
                _checkpoint(run_path),
            )
        )
    rows = {}
    for p in points:
        rows.setdefault(p.method, []).append(p)
    columns = [TARGET, "train/recall@1", "train/rho@2", "train/pi_ratio"]
    table = pd.DataFrame(
        [
            {
                "method": method,
                "runs": len(members),
                **{
                    label(c): _mean_std([p.values.get(c, math.nan) for p in members])
                    for c in columns
                },
            }
            for method, members in rows.items()
        ]
    )
    return StudyView(
        title=f"Runs in `{_label(Path(path))}`",
        kind="runs",
        markdown="",
        table=table,
        selection=" / ".join(sorted(selections)),
        curves=curves,
        points=points,
        note=(
            "A folder of runs has no study file, so no claims: runs are grouped into methods by "
            "the config fields that differ (the seed aside), as `python -m dml_core report` "
            "groups them, and each counts at the epoch of its own best validation metric "
            "(its last epoch without validation classes)."
        ),
    )


def _mean_std(values: list[float]) -> str:
    finite = np.array([v for v in values if math.isfinite(v)])
    if len(finite) == 0:
        return "–"
    if len(finite) == 1:
        return metric_text(finite[0])
    return f"{metric_text(finite.mean())} ± {metric_text(finite.std(ddof=1))}"


@st.cache_data(max_entries=16, show_spinner=False)
def load_view(kind: str, path: str, identity: tuple) -> StudyView:
    """The source's view; ``identity`` (:func:`signature`) keys the cache."""
    return _study_view(path) if kind == "study" else _folder_view(path)


@st.cache_data(max_entries=64, show_spinner=False)
def load_explanation(kind: str, path: str, identity: tuple, metric: str) -> Explanation:
    return explain(load_view(kind, path, identity).points, metric)


def curves_figure(view: StudyView) -> go.Figure:
    """Every run's selection metric per evaluation, one colour per method; the selected epoch is
    the large marker. Each point carries its run's checkpoint (customdata) for a click."""
    figure = go.Figure()
    methods = list(dict.fromkeys(c.method for c in view.curves))
    for curve in view.curves:
        colour = PALETTE[methods.index(curve.method) % len(PALETTE)]
        sizes = [11 if e == curve.selected_epoch else 4 for e in curve.epochs]
        figure.add_trace(
            go.Scatter(
                x=curve.epochs,
                y=curve.values,
                mode="lines+markers",
                line={"color": colour, "width": 1.3},
                marker={"size": sizes, "color": colour},
                name=curve.method,
                legendgroup=curve.method,
                showlegend=curve is next(c for c in view.curves if c.method == curve.method),
                customdata=[[curve.checkpoint or "", curve.method, curve.seed]] * len(curve.epochs),
                hovertemplate=(
                    f"{curve.method} seed {curve.seed}<br>epoch %{{x}}: %{{y:.4f}}"
                    f"<br>selected epoch {curve.selected_epoch}"
                    + ("<br>click: open in Inspect" if curve.checkpoint else "")
                    + "<extra></extra>"
                ),
            )
        )
    figure.update_layout(
        height=470,
        margin={"l": 50, "r": 10, "t": 40, "b": 110},
        title={"text": f"{view.selection} per evaluation (large marker: selected epoch)", "x": 0},
        xaxis_title="epoch",
        yaxis_title=view.selection,
        legend={"orientation": "h", "y": -0.16, "yanchor": "top"},
    )
    return figure


def scatter_figure(e: Explanation) -> go.Figure:
    """Left: method means with ± 1 std over seeds; right: every run, coloured by method."""
    figure = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("over method means (± 1 std over seeds)", "over runs"),
        horizontal_spacing=0.08,
    )
    for i, (method, runs) in enumerate(e.points.items()):
        colour = PALETTE[i % len(PALETTE)]
        xs = np.array([v[0] for v in runs.values()])
        ys = np.array([v[1] for v in runs.values()])
        spread = len(xs) > 1
        figure.add_trace(
            go.Scatter(
                x=[xs.mean()],
                y=[ys.mean()],
                mode="markers",
                marker={"size": 10, "color": colour},
                error_x={"type": "data", "array": [xs.std(ddof=1) if spread else 0], "width": 0},
                error_y={"type": "data", "array": [ys.std(ddof=1) if spread else 0], "width": 0},
                name=method,
                legendgroup=method,
                hovertemplate=f"{method}<br>x̄ %{{x:.4f}}<br>ȳ %{{y:.4f}}<extra></extra>",
            ),
            row=1,
            col=1,
        )
        figure.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="markers",
                marker={"size": 7, "color": colour, "opacity": 0.8},
                name=method,
                legendgroup=method,
                showlegend=False,
                text=[f"{method} seed {s}" for s in runs],
                hovertemplate="%{text}<br>%{x:.4f}, %{y:.4f}<extra></extra>",
            ),
            row=1,
            col=2,
        )
    for col in (1, 2):
        figure.update_xaxes(title_text=label(e.metric), row=1, col=col)
        figure.update_yaxes(title_text=label(e.target), row=1, col=col)
    figure.update_layout(
        height=480,
        margin={"l": 50, "r": 10, "t": 40, "b": 150},
        legend={"orientation": "h", "y": -0.3, "yanchor": "top"},
    )
    return figure


def correlation_table(e: Explanation) -> pd.DataFrame:
    def row(over: str, name: str, interval, permutation: str, paper: str) -> dict:
        finite = math.isfinite(interval.low)
        return {
            "over": over,
            "correlation": name,
            "estimate": f"{interval.estimate:+.2f}",
            "95 % interval (seeds resampled jointly)": (
                f"[{interval.low:+.2f}, {interval.high:+.2f}]" if finite else "–"
            ),
            "excludes 0": ("yes" if interval.low > 0 or interval.high < 0 else "no")
            if finite
            else "–",
            "permutation p (methods)": permutation,
            "paper, CUB200 (Spearman)": paper,
        }

    paper = "–" if e.paper is None else f"{e.paper:+.2f}"
    methods = f"{len(e.means)} method means"
    runs = f"{e.runs_spearman.n} runs"
    return pd.DataFrame(
        [
            row(methods, "Spearman", e.spearman, f"{e.permutation.p_value:.3g}", paper),
            row(methods, "Pearson", e.pearson, "–", "–"),
            row(runs, "Spearman", e.runs_spearman, "–", "–"),
            row(runs, "Pearson", e.runs_pearson, "–", "–"),
        ]
    )


def leave_one_out_table(e: Explanation) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "held-out method": r.method,
                "sign fitted on the others": {1: "+", -1: "−", 0: "none"}[r.sign],
                f"rank by {label(e.metric)}": r.predicted,
                f"rank by {label(e.target)}": r.actual,
                "exact": "yes" if r.sign and r.predicted == r.actual else "no",
                "within one": "yes" if r.sign and abs(r.predicted - r.actual) <= 1 else "no",
            }
            for r in e.leave_one_out.rows
        ]
    )
