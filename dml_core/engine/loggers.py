"""Optional experiment trackers beside ``events.jsonl``: TensorBoard (``--tensorboard``) and
Weights & Biases (``--wandb``). Neither is a runtime dependency (both are in requirements-dev.txt):
asking for one that is not installed is a clear error before training starts.

TensorBoard writes event files to ``<run>/tensorboard``. W&B runs *offline* unless the user sets
``WANDB_MODE`` (``WANDB_MODE=online`` after ``wandb login`` uploads live; an offline run is uploaded
later with ``wandb sync``), into ``<run>/wandb`` unless ``WANDB_DIR`` says otherwise: by default it
never reaches the network and never asks for a key.
"""

from __future__ import annotations

import os
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
            self._wandb_run = _start_wandb(out_dir, config)

    def log(self, values: dict[str, float], step: int) -> None:
        for writer in self._writers:
            for key, value in values.items():
                writer.add_scalar(key, value, step)
        if self._wandb_run is not None:
            self._wandb_run.log(values, step=step)

    def close(self) -> None:
        """Flush and close every tracker; a second call does nothing. W&B's service may finish
        writing the offline run file after ``finish()`` returns (at the latest at process exit)."""
        for writer in self._writers:
            writer.close()
        self._writers = []
        if self._wandb_run is not None:
            self._wandb_run.finish()
            self._wandb_run = None


def _start_wandb(out_dir: Path | None, config: dict) -> Any:
    """``wandb.init`` offline (unless ``WANDB_MODE`` is set) in ``out_dir`` (unless ``WANDB_DIR``)."""
    try:
        import wandb
    except ImportError:
        raise TrackerMissingError(
            "--wandb needs the wandb package: pip install wandb (runs log offline unless "
            "WANDB_MODE=online)"
        ) from None
    directory = None
    if "WANDB_DIR" not in os.environ and out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        directory = str(out_dir)
    try:
        return wandb.init(
            project="dml-explorer",
            name=out_dir.name if out_dir is not None else None,
            config=config,
            dir=directory,
            mode=None if "WANDB_MODE" in os.environ else "offline",
        )
    except wandb.errors.UsageError as error:
        raise ValueError(
            f"--wandb could not start a run ({str(error).splitlines()[0]}); run `wandb login` "
            "for WANDB_MODE=online, or leave WANDB_MODE unset to log offline"
        ) from None
