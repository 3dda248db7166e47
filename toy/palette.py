"""The toy's colours, shared by the paper-style figure and the app: train classes in cool colours
(blues and greens), the unseen test classes in warm ones (reds and oranges), so the two families
never look like the same classes; one colour per mode."""

from __future__ import annotations

TRAIN_COLOURS = ("#08519c", "#3a8fd9", "#17a398", "#6a51a3")
TEST_COLOURS = ("#d62728", "#ff7f0e", "#b8860b", "#e377c2")
MODE_COLOURS = {"base": "#555555", "paper": "#d62728", "rho": "#1f77b4", "no_pull": "#2ca02c"}
