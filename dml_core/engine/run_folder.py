"""The trainer's run folder: where a run may start or resume, and its resumable state.

``check_out_dir`` refuses a new run in a folder that holds one; ``open_run_folder`` takes the
folder for a run (lock, leftovers, ``config.json``); ``split_class_names`` and
``capture_train_state`` give what ``best``/``last`` carry; ``restore_train_state`` loads
``last.safetensors`` and ``train_state.pt`` back into a run's parts (``engine/checkpoint.py``
writes and reads the files, docs/DESIGN.md §6).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from dml_core.engine.checkpoint import (
    LAST_FILE,
    PENDING_LAST,
    STATE_FILE,
    ResumePoint,
    TrainState,
    read_resume_point,
    settle_pending,
)
from dml_core.io import FolderLock, clean_temp_files


def check_out_dir(out: Path, resume: bool) -> None:
    """A new run never goes into a folder that holds a run (even one without a checkpoint
    yet); ``resume`` needs the run's ``config.json``."""
    if resume:
        if not (out / "config.json").is_file():
            raise FileNotFoundError(f"cannot resume {out}: it holds no config.json")
        return
    run_files = ("config.json", LAST_FILE, STATE_FILE, PENDING_LAST)
    if any((out / name).exists() for name in run_files):
        not_yet = "" if (out / LAST_FILE).exists() else " (it has no checkpoint yet)"
        raise FileExistsError(
            f"{out} already holds a run{not_yet}; use --resume {out} to continue it, or "
            "another --out"
        )


def open_run_folder(out: Path, lock: FolderLock, config: Any, resume: bool) -> None:
    """Take ``out`` for a run: ``lock`` refuses a folder a live process trains into; then the
    folder is checked again under it, what a kill -9 left mid-write is removed, and a resumed run
    finishes an interrupted checkpoint move (``settle_pending``) while a new one writes its
    ``config.json``. The lock is released again if any step fails."""
    lock.acquire()
    try:
        check_out_dir(out, resume)
        clean_temp_files(out)
        if resume:
            settle_pending(out)
        else:
            config.save(out / "config.json")
    except BaseException:
        lock.release()
        raise


def split_class_names(train_set: Any, test_set: Any, val_set: Any | None) -> dict[str, list]:
    """The class names of each split, as a checkpoint header stores them."""
    class_names = {"train": list(train_set.class_names), "test": list(test_set.class_names)}
    if val_set is not None:
        class_names["val"] = list(val_set.class_names)
    return class_names


def capture_train_state(
    *,
    epoch: int,
    batch_in_epoch: int,
    step: int,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    miner_generator: torch.Generator,
    loader_generator: torch.Generator,
    best: dict[str, Any],
) -> TrainState:
    """The position, optimizer, scheduler and RNG streams a resumed run continues from."""
    return TrainState(
        epoch=epoch,
        batch_in_epoch=batch_in_epoch,
        step=step,
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict() if scheduler is not None else {},
        torch_rng=torch.get_rng_state(),
        miner_rng=miner_generator.get_state(),
        best_value=best["value"],
        best_epoch=best["epoch"],
        loader_rng=loader_generator.get_state(),
    )


def restore_train_state(
    out_dir: Path,
    *,
    model: torch.nn.Module,
    loss: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    miner_generator: torch.Generator,
    loader_generator: torch.Generator,
    sampler: Any,
) -> ResumePoint | None:
    """Load ``last.safetensors`` and ``train_state.pt`` (no pickle involved) into the run's parts;
    the sampler resumes at the first batch not yet trained on (its ``load_state_dict``). None
    (with a warning) when the run stopped before its first checkpoint."""
    if not (out_dir / STATE_FILE).exists():
        # Stopped before its first checkpoint: the run starts again from its seed, which
        # gives the same run an uninterrupted one would have been.
        warnings.warn(
            f"{out_dir} has no checkpoint yet (the run ended before its first one); "
            "it starts again from epoch 0",
            RuntimeWarning,
            stacklevel=4,  # the caller of Trainer(...)
        )
        return None
    point = read_resume_point(out_dir)
    state = point.state
    model.load_state_dict(point.model)
    loss.load_state_dict(point.loss)
    optimizer.load_state_dict(state.optimizer)
    if scheduler is not None and state.scheduler:
        scheduler.load_state_dict(state.scheduler)
    torch.set_rng_state(state.torch_rng)
    miner_generator.set_state(state.miner_rng.to(miner_generator.get_state().device))
    if state.loader_rng is not None:
        loader_generator.set_state(state.loader_rng)
    sampler.load_state_dict({"epoch": state.epoch, "batch_in_epoch": state.batch_in_epoch})
    return point
