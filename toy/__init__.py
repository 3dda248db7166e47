"""The diagonal-lines toy of Roth et al. (ICML 2020, §4.1): four modes that separate the published
regularized run's two changes, multi-seed statistics and the paper-style figure (``python -m toy``).
"""

from __future__ import annotations

from toy.api import (
    MODE_DESCRIPTIONS,
    TOY_MODES,
    ToyFrame,
    ToyRecording,
    ToyResult,
    ToySettings,
    record_toy,
    run_toy,
    toy_config,
    toy_data,
    train_toy,
)
from toy.study import run_study

__all__ = [
    "MODE_DESCRIPTIONS",
    "TOY_MODES",
    "ToyFrame",
    "ToyRecording",
    "ToyResult",
    "ToySettings",
    "record_toy",
    "run_study",
    "run_toy",
    "toy_config",
    "toy_data",
    "train_toy",
]
