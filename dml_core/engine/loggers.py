"""Optional experiment trackers beside ``events.jsonl``: TensorBoard (``--tensorboard``) and
Weights & Biases (``--wandb``; it honours ``WANDB_MODE=offline`` itself). Neither is a dependency:
asking for one that is not installed is a clear error before training starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class TrackerMissingError(ValueError):
    """A tracker was requested but its package is not installed."""


class Trackers:
    """Sends scalar logs to the requested trackers; does nothing when none is requested."""

    def __init__(
        self, *, tensorboard: bool, wandb: bool, out_dir: Path | None, config: dict
    ) -> None:
        self._writers: list[Any] = []
        self._wandb_run = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise TrackerMissingError(
                    "--tensorboard needs the tensorboard package: pip install tensorboard"
                ) from None
            log_dir = (out_dir or Path("runs/unnamed")) / "tensorboard"
            self._writers.append(SummaryWriter(log_dir=str(log_dir)))
        if wandb:
            try:
                import wandb as wandb_module
            except ImportError:
                raise TrackerMissingError(
                    "--wandb needs the wandb package: pip install wandb (set WANDB_MODE=offline "
                    "to log without a network)"
                ) from None
            name = out_dir.name if out_dir is not None else None
            self._wandb_run = wandb_module.init(project="dml-explorer", name=name, config=config)

    def log(self, values: dict[str, float], step: int) -> None:
        for writer in self._writers:
            for key, value in values.items():
                writer.add_scalar(key, value, step)
        if self._wandb_run is not None:
            self._wandb_run.log(values, step=step)

    def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._wandb_run is not None:
            self._wandb_run.finish()
