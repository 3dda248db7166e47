"""The diagonal-lines toy of Roth et al. (ICML 2020, §4.1): four modes that separate the published
regularized run's two changes, multi-seed statistics and the paper-style figure (``python -m toy``).
"""

from __future__ import annotations

from toy.api import (
    TOY_MODES,
    ToyFrame,
    ToyResult,
    ToySettings,
    run_toy,
    toy_config,
    toy_data,
    train_toy,
)
from toy.study import run_study

__all__ = [
    "TOY_MODES",
    "ToyFrame",
    "ToyResult",
    "ToySettings",
    "run_study",
    "run_toy",
    "toy_config",
    "toy_data",
    "train_toy",
]
