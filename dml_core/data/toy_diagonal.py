"""``toy_diagonal``: the 2-D "diagonal lines" toy of Roth et al., ICML 2020 (sec. 4.1, fig. 2).

Train: 4 classes on y = x over x ∈ (0.1, 0.3), (0.35, 0.55), (0.6, 0.8), (0.85, 1.05). Test: 4
classes on x = 0.2 (y ∈ [0.2, 0.4] and [0.55, 0.85]) and on y = 0.2 (x ∈ [0.4, 0.6] and
[0.7, 0.9]). Each class is a line of 100 evenly spaced points of which 15 are drawn without
replacement (by ``seed``). A network trained on the train lines collapses the direction that
separates the test lines unless its embedding keeps several directions in use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from dml_core.data.base import DATASETS, DMLDataset, Item, Transform, check_split

POINTS_PER_LINE = 100
DRAWN_PER_LINE = 15

# Each line: (start point, end point), in class order.
TRAIN_LINES = (
    ((0.10, 0.10), (0.30, 0.30)),
    ((0.35, 0.35), (0.55, 0.55)),
    ((0.60, 0.60), (0.80, 0.80)),
    ((0.85, 0.85), (1.05, 1.05)),
)
TEST_LINES = (
    ((0.2, 0.20), (0.2, 0.40)),
    ((0.2, 0.55), (0.2, 0.85)),
    ((0.40, 0.2), (0.60, 0.2)),
    ((0.70, 0.2), (0.90, 0.2)),
)
PLOT_RANGE = (0.0, 1.1)
CLASS_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40))


def line_points(
    lines: tuple[tuple[tuple[float, float], tuple[float, float]], ...], seed: int, stream: int
) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 2) float32 and labels (N,) int64: per line, 15 of 100 evenly spaced points."""
    points, labels = [], []
    for label, (start, end) in enumerate(lines):
        fraction = np.linspace(0.0, 1.0, POINTS_PER_LINE)[:, None]
        grid = np.asarray(start) + fraction * (np.asarray(end) - np.asarray(start))
        rng = np.random.default_rng([seed, stream, label])
        chosen = np.sort(rng.choice(POINTS_PER_LINE, DRAWN_PER_LINE, replace=False))
        points.append(grid[chosen])
        labels.append(np.full(DRAWN_PER_LINE, label))
    return np.concatenate(points).astype(np.float32), np.concatenate(labels).astype(np.int64)


@DATASETS.register("toy_diagonal")
class ToyDiagonalDataset(DMLDataset):
    """The diagonal-lines toy; ``eval_train`` equals train. Items are float32 tensors of shape (2,)."""

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        transform: Transform | None = None,
        seed: int = 0,
    ) -> None:
        self.split = check_split(split)
        is_test = split == "test"
        lines = TEST_LINES if is_test else TRAIN_LINES
        points, labels = line_points(lines, seed, stream=int(is_test))
        self.points = torch.from_numpy(points)
        self._set_labels(labels, [self._line_name(start, end) for start, end in lines])
        self.transform = transform
        self.input_shape = (2,)

    @staticmethod
    def _line_name(start: tuple[float, float], end: tuple[float, float]) -> str:
        if start[0] == end[0]:
            return f"x=0.2, y∈[{start[1]:.2f},{end[1]:.2f}]"
        if start[1] == end[1]:
            return f"y=0.2, x∈[{start[0]:.2f},{end[0]:.2f}]"
        return f"y=x, x∈[{start[0]:.2f},{end[0]:.2f}]"

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split at once: points (N, 2) float32 and labels (N,) int64 (no transform)."""
        return self.points.clone(), torch.from_numpy(self.labels.copy())

    def __getitem__(self, index: int) -> Item:
        point = self.points[index]
        if self.transform is not None:
            point = self.transform(point)
        return point, int(self.labels[index]), index

    def thumbnail(self, index: int, size: int = 64) -> Image.Image:
        """The point as a dot in the unit square (class colour), for the app's scatter tooltips."""
        picture = Image.new("RGB", (size, size), "white")
        low, high = PLOT_RANGE
        x, y = ((self.points[index].numpy() - low) / (high - low) * (size - 1)).tolist()
        radius = max(1, size // 16)
        colour = CLASS_COLOURS[int(self.labels[index]) % len(CLASS_COLOURS)]
        ImageDraw.Draw(picture).ellipse(
            (x - radius, size - 1 - y - radius, x + radius, size - 1 - y + radius), fill=colour
        )
        return picture

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "num_skipped": 0}
