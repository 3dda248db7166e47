"""The toy's paper-style figure (Roth et al., ICML 2020, fig. 2) plus the multi-seed statistics.

Top row: the data, the ``base`` embedding and the regularized (``paper``) embedding of one seed, the
unit circle drawn; bottom row: both spectra as bars, and per mode the mean and 95% interval over
seeds of test Recall@1 and of ρ@1 (lower = flatter spectrum). 3-D embeddings are drawn as their
(x, y) projection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from dml_core.io import atomic_write
from toy.api import ToyResult
from toy.palette import MODE_COLOURS, TEST_COLOURS, TRAIN_COLOURS


def _scatter_classes(axes: Axes, points: np.ndarray, labels: np.ndarray, test: bool) -> None:
    colours = TEST_COLOURS if test else TRAIN_COLOURS
    for label in np.unique(labels):
        chosen = points[labels == label]
        axes.scatter(
            chosen[:, 0],
            chosen[:, 1],
            s=14,
            marker="x" if test else "o",
            color=colours[int(label) % len(colours)],
            label=f"{'test' if test else 'train'} {int(label)}",
        )


def _draw_data(axes: Axes, data: dict[str, np.ndarray]) -> None:
    _scatter_classes(axes, data["train_points"], data["train_labels"], test=False)
    _scatter_classes(axes, data["test_points"], data["test_labels"], test=True)
    axes.set_title("data: train (o) on y = x, test (x)")
    axes.set_aspect("equal")
    axes.legend(fontsize=6, ncol=2, loc="lower right")


def _draw_embedding(axes: Axes, result: ToyResult, title: str) -> None:
    angle = np.linspace(0, 2 * np.pi, 200)
    axes.plot(np.cos(angle), np.sin(angle), color="0.8", linewidth=1)
    _scatter_classes(axes, result.train_embeddings, result.train_labels, test=False)
    _scatter_classes(axes, result.test_embeddings, result.test_labels, test=True)
    metrics = result.metrics
    axes.set_title(
        f"{title}\ntest R@1 {metrics['test_recall@1']:.2f}, ρ@1 {metrics['rho@1']:.3f}",
        fontsize=9,
    )
    axes.set_xlim(-1.15, 1.15)
    axes.set_ylim(-1.15, 1.15)
    axes.set_aspect("equal")


def _draw_spectra(axes: Axes, base: ToyResult, regularized: ToyResult) -> None:
    positions = np.arange(1, base.spectrum.shape[0] + 1)
    axes.bar(positions - 0.2, base.spectrum, 0.4, label="base", color=MODE_COLOURS["base"])
    axes.bar(positions + 0.2, regularized.spectrum, 0.4, label="paper", color=MODE_COLOURS["paper"])
    axes.set_xticks(positions)
    axes.set_xlabel("singular value index")
    axes.set_title("normalised singular values (train)", fontsize=9)
    axes.legend(fontsize=7)


def _draw_statistic(axes: Axes, study: dict[str, Any], metric: str, label: str) -> None:
    modes = list(study["modes"])
    for position, mode in enumerate(modes):
        summary = study["modes"][mode]["summary"][metric]
        per_seed = [record[metric] for record in study["modes"][mode]["per_seed"]]
        colour = MODE_COLOURS.get(mode, "black")
        jitter = np.linspace(-0.15, 0.15, len(per_seed))
        axes.scatter(position + jitter, per_seed, s=6, color=colour, alpha=0.35)
        if summary["mean"] is not None and summary["ci95"] is not None:
            low, high = summary["ci95"]
            axes.errorbar(
                position,
                summary["mean"],
                yerr=[[summary["mean"] - low], [high - summary["mean"]]],
                fmt="o",
                color=colour,
                capsize=4,
            )
    axes.set_xticks(range(len(modes)), modes)
    axes.set_title(f"{label}: seeds, mean and 95% CI (n = {len(study['seeds'])})", fontsize=9)


def toy_figure(
    data: dict[str, np.ndarray],
    base: ToyResult,
    regularized: ToyResult,
    study: dict[str, Any],
) -> Figure:
    """The 2×3 figure described in the module docstring."""
    figure, axes = plt.subplots(2, 3, figsize=(13, 8.5))
    _draw_data(axes[0, 0], data)
    _draw_embedding(axes[0, 1], base, f"base (seed {base.settings.seed})")
    _draw_embedding(
        axes[0, 2], regularized, f"paper: swap 0.001, no pull (seed {regularized.settings.seed})"
    )
    _draw_spectra(axes[1, 0], base, regularized)
    _draw_statistic(axes[1, 1], study, "test_recall@1", "test Recall@1")
    _draw_statistic(axes[1, 2], study, "rho@1", "ρ@1 (lower = flatter)")
    figure.tight_layout()
    return figure


def save_figure(figure: Figure, path: str | Path) -> None:
    """Write the figure as PNG atomically and release it."""
    atomic_write(Path(path), lambda temporary: figure.savefig(temporary, format="png", dpi=110))
    plt.close(figure)
