"""Safe checkpoints (docs/DESIGN.md §6): one ``.safetensors`` file, never pickle, and the resumable state.

Tensors are stored under ``model.<name>`` and ``loss.<name>`` (the loss's own parameters, such as
proxies or per-class β, kept apart from the model's). The header's metadata holds one JSON document
under the key ``dml_explorer``: format version, code version and the run header that
``run_header`` lays out (kind, the full TrainConfig, the model config, dataset name, root and class
split, epoch/step, metric history, best metric). Beside ``last.safetensors``, ``train_state.pt``
holds what a resumed run needs beyond the weights (``TrainState``: tensors and plain values only,
read with ``weights_only=True``). Files are written through a temporary file and ``os.replace``,
so a crash never leaves a half-written file in place; the pair ``last`` + ``train_state.pt`` is
committed as one (``save_run_checkpoint``), and ``read_metadata`` (in
:mod:`dml_core.engine.checkpoint_header`, which needs no torch) checks a header against its schema,
with bounds, before anything is built from it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from dml_core import __version__
from dml_core.engine.checkpoint_header import (
    FORMAT_VERSION,
    METADATA_KEY,
    CheckpointError,
    read_metadata,
    refusal,
)
from dml_core.engine.header_schema import is_count
from dml_core.io import atomic_write, fault_point, load_plain_torch_file, write_safetensors

STATE_FILE = "train_state.pt"
LAST_FILE = "last.safetensors"
PENDING_LAST = ".last.safetensors.next"
"""The new ``last`` while its pair is being committed (hidden: no reader lists it)."""


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    metadata: dict[str, Any],
    loss: torch.nn.Module | None = None,
) -> Path:
    """Write weights and metadata atomically; returns the path."""
    tensors = {
        f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in _state(model).items()
    }
    if loss is not None:
        tensors.update(
            {
                f"loss.{k}": v.detach().cpu().contiguous().clone()
                for k, v in loss.state_dict().items()
            }
        )
    document = {"format_version": FORMAT_VERSION, "code_version": __version__, **metadata}
    header = {METADATA_KEY: json.dumps(document, sort_keys=True)}
    return atomic_write(path, lambda tmp: write_safetensors(tmp, tensors, header))


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State dict of the bare model (unwrapping DDP and torch.compile)."""
    model = getattr(model, "module", model)
    model = getattr(model, "_orig_mod", model)
    return model.state_dict()


def load_tensors(path: str | Path, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors stored under ``prefix.`` (``"model"`` or ``"loss"``), prefix removed."""
    read_metadata(path)
    try:
        tensors = load_file(str(path))
    except Exception as error:  # the header passed its schema; the tensor data did not
        raise refusal(path, f"has unreadable tensor data ({str(error).splitlines()[0]})") from None
    start = len(prefix) + 1
    return {k[start:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model from the metadata alone and load its weights: ``(model, metadata)``."""
    from dml_core.models import build_model

    metadata = read_metadata(path)
    model_config = dict(metadata["model"])
    arch = model_config.pop("arch")
    embed_dim = model_config.pop("embed_dim")
    model_config["pretrained"] = None
    try:
        model = build_model(arch, embed_dim, **model_config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: its metadata names no buildable model ({error})") from None
    try:
        model.load_state_dict(load_tensors(path, "model"))
    except RuntimeError as error:
        raise CheckpointError(
            f"{path}: the weights do not fit the architecture its metadata names ({arch}, "
            f"embed_dim={embed_dim}): {str(error).splitlines()[0]}"
        ) from None
    return model.to(device).eval(), metadata


# --- a training run's checkpoints ----------------------------------------------------------------


def run_header(
    kind: str,
    *,
    config: dict[str, Any],
    model_config: dict[str, Any],
    class_names: dict[str, list[str]],
    epoch: int,
    step: int,
    history: list[dict[str, float]],
    best: dict[str, Any],
) -> dict[str, Any]:
    """The metadata of a run's ``<kind>.safetensors`` (``kind``: "best" or "last").

    ``class_names`` maps each split ("train", "test", "val" when held out) to its class names;
    ``best`` is ``{"metric": "<split>/<name>", "value", "epoch"}``; ``selected_on`` is its split.
    """
    return {
        "kind": kind,
        "config": config,
        "model": model_config,
        "dataset": {"name": config["dataset"], "root": config["data_root"], "classes": class_names},
        "epoch": epoch,
        "step": step,
        "history": history,
        "best": dict(best),
        "selected_on": best["metric"].split("/")[0],
    }


@dataclass
class TrainState:
    """What a resumed run needs beyond the weights: position, optimizer, scheduler, RNG streams."""

    epoch: int
    batch_in_epoch: int
    """Steps completed in ``epoch`` (the sampler skips that many batches on resume)."""
    step: int
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    """Empty when the run has no scheduler."""
    torch_rng: torch.Tensor
    miner_rng: torch.Tensor
    best_value: float | None
    best_epoch: int | None
    loader_rng: torch.Tensor | None = None
    """The training DataLoader's own generator (worker seeds); None for in-memory data."""


@dataclass
class ResumePoint:
    """A run directory's ``last.safetensors`` and ``train_state.pt``, read back."""

    model: dict[str, torch.Tensor]
    loss: dict[str, torch.Tensor]
    history: list[dict[str, float]]
    state: TrainState


def save_run_checkpoint(
    run_dir: str | Path,
    header: dict[str, Any],
    model: torch.nn.Module,
    loss: torch.nn.Module,
    state: TrainState | None = None,
) -> Path:
    """Write ``<run_dir>/<header["kind"]>.safetensors`` and, given ``state``, ``train_state.pt``.

    ``last`` and its state are committed as one: the new ``last`` goes to ``PENDING_LAST``, then
    ``train_state.pt`` replaces the old state (the commit point: from here on the pending file is
    the run's ``last``), then the pending file replaces ``last.safetensors``. A crash before the
    commit leaves the old pair; after it, ``settle_pending`` finishes the move on resume.
    """
    run_dir = Path(run_dir)
    if state is None:
        return save_checkpoint(run_dir / f"{header['kind']}.safetensors", model, header, loss=loss)
    pending = save_checkpoint(run_dir / PENDING_LAST, model, header, loss=loss)
    values = {f.name: getattr(state, f.name) for f in fields(TrainState)}
    try:
        atomic_write(run_dir / STATE_FILE, lambda tmp: torch.save(values, tmp))
    except Exception:  # not committed (a full disk): the pending file is not the run's `last`
        pending.unlink(missing_ok=True)
        raise
    fault_point("state_written", STATE_FILE)
    os.replace(pending, run_dir / LAST_FILE)
    fault_point("renamed", LAST_FILE)
    return run_dir / LAST_FILE


def read_train_state(path: str | Path) -> TrainState:
    """``train_state.pt`` read with ``weights_only=True`` and checked field by field."""
    values = load_plain_torch_file(path, "a DML Explorer train state")
    names = [f.name for f in fields(TrainState) if f.name != "loader_rng"]
    if not isinstance(values, dict) or any(name not in values for name in names):
        raise CheckpointError(f"{path} is not a DML Explorer train state (fields missing)")
    counts = ("epoch", "batch_in_epoch", "step")
    if (
        not all(is_count(values[name]) for name in counts)
        or not isinstance(values["optimizer"], dict)
        or not isinstance(values["scheduler"], dict)
        or not all(
            isinstance(values.get(name), torch.Tensor) and values[name].dtype == torch.uint8
            for name in ("torch_rng", "miner_rng")
        )
    ):
        raise CheckpointError(f"{path} is not a DML Explorer train state (fields of wrong types)")
    return TrainState(**{f.name: values.get(f.name) for f in fields(TrainState)})


def settle_pending(run_dir: str | Path) -> str | None:
    """Finish or undo a checkpoint interrupted by a crash (see ``save_run_checkpoint``): a pending
    ``last`` whose step matches the committed state becomes ``last.safetensors``; one that does not
    (the crash came before the commit) is removed. Returns what was done, or None."""
    run_dir = Path(run_dir)
    pending, state_path = run_dir / PENDING_LAST, run_dir / STATE_FILE
    if not pending.exists():
        return None
    try:
        pending_step = read_metadata(pending).get("step")
        committed = state_path.exists() and read_train_state(state_path).step == pending_step
    except (CheckpointError, ValueError):
        committed = False
    if committed:
        os.replace(pending, run_dir / LAST_FILE)
        return f"completed the checkpoint of step {pending_step} a crash had interrupted"
    pending.unlink()
    return "dropped a checkpoint a crash had interrupted before it was committed"


def read_resume_point(run_dir: str | Path) -> ResumePoint:
    """The weights, history and ``TrainState`` to continue the run in ``run_dir`` (no pickle);
    ``last.safetensors`` and ``train_state.pt`` must agree on epoch and step."""
    run_dir = Path(run_dir)
    last = run_dir / LAST_FILE
    state_path = run_dir / STATE_FILE
    if not last.exists() or not state_path.exists():
        raise FileNotFoundError(
            f"cannot resume {run_dir}: expected {LAST_FILE} and {STATE_FILE} there"
        )
    state = read_train_state(state_path)
    metadata = read_metadata(last)
    if (metadata.get("epoch"), metadata.get("step")) != (state.epoch, state.step):
        raise CheckpointError(
            f"cannot resume {run_dir}: {LAST_FILE} is at epoch {metadata.get('epoch')}, step "
            f"{metadata.get('step')} but {STATE_FILE} at epoch {state.epoch}, step {state.step} "
            "(files from different runs or edited by hand); start a new run with another --out"
        )
    return ResumePoint(
        model=load_tensors(last, "model"),
        loss=load_tensors(last, "loss"),
        history=list(metadata.get("history", [])),
        state=state,
    )
