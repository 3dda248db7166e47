"""Safe checkpoints (docs/DESIGN.md §6): one ``.safetensors`` file, never pickle, and the resumable state.

Tensors are stored under ``model.<name>`` and ``loss.<name>`` (the loss's own parameters, such as
proxies or per-class β, kept apart from the model's). The header's metadata holds one JSON document
under the key ``dml_explorer``: format version, code version and the run header that
``run_header`` lays out (kind, the full TrainConfig, the model config, dataset name, root and class
split, epoch/step, metric history, best metric). Beside ``last.safetensors``, ``train_state.pt``
holds what a resumed run needs beyond the weights (``TrainState``: tensors and plain values only,
read with ``weights_only=True``). Files are written through a temporary file and ``os.replace``,
so a crash never leaves a half-written file in place.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from dml_core import __version__
from dml_core.io import atomic_write

FORMAT_VERSION = 1
METADATA_KEY = "dml_explorer"
STATE_FILE = "train_state.pt"


class CheckpointError(ValueError):
    """A file that is not a DML Explorer checkpoint, or one that does not match the model."""


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
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State dict of the bare model (unwrapping DDP and torch.compile)."""
    model = getattr(model, "module", model)
    model = getattr(model, "_orig_mod", model)
    return model.state_dict()


def _refuse(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(
        f"{path} {reason}. Expected a .safetensors checkpoint written by `python -m dml_core train`; "
        "DML Explorer never unpickles files."
    )


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The checkpoint's JSON document, read from the header alone (no tensor is loaded)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(9)
        (header_size,) = struct.unpack("<Q", head[:8]) if len(head) >= 8 else (None,)
        looks_safetensors = header_size is not None and head[8:9] == b"{"
        if not looks_safetensors:
            if head[:4] == b"PK\x03\x04" or (
                head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05"
            ):
                raise _refuse(path, "is a pickle / torch.save file and is refused")
            raise _refuse(path, "is not a safetensors file or is truncated (no header)")
        if header_size > size - 8 or header_size > 100_000_000:
            raise _refuse(path, "is not a safetensors file or is truncated (bad header length)")
        handle.seek(8)
        try:
            header = json.loads(handle.read(header_size))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _refuse(path, "has an unreadable safetensors header") from None
    data_end = max(
        (entry["data_offsets"][1] for k, entry in header.items() if k != "__metadata__"), default=0
    )
    if 8 + header_size + data_end > size:
        raise _refuse(
            path, f"is truncated ({size} bytes, header promises {8 + header_size + data_end})"
        )
    raw = (header.get("__metadata__") or {}).get(METADATA_KEY)
    if raw is None:
        raise _refuse(path, "is a safetensors file but not a DML Explorer checkpoint (no metadata)")
    document = json.loads(raw)
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise _refuse(
            path, f"has checkpoint format version {version!r}; this code reads {FORMAT_VERSION}"
        )
    return document


def load_tensors(path: str | Path, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors stored under ``prefix.`` (``"model"`` or ``"loss"``), prefix removed."""
    read_metadata(path)
    tensors = load_file(str(path))
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
    model = build_model(arch, embed_dim, **model_config)
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
    """Write ``<run_dir>/<header["kind"]>.safetensors`` and, given ``state``, ``train_state.pt``."""
    run_dir = Path(run_dir)
    path = save_checkpoint(run_dir / f"{header['kind']}.safetensors", model, header, loss=loss)
    if state is not None:
        values = {f.name: getattr(state, f.name) for f in fields(TrainState)}
        atomic_write(run_dir / STATE_FILE, lambda tmp: torch.save(values, tmp))
    return path


def read_resume_point(run_dir: str | Path) -> ResumePoint:
    """The weights, history and ``TrainState`` to continue the run in ``run_dir`` (no pickle)."""
    run_dir = Path(run_dir)
    last = run_dir / "last.safetensors"
    state_path = run_dir / STATE_FILE
    if not last.exists() or not state_path.exists():
        raise FileNotFoundError(
            f"cannot resume {run_dir}: expected last.safetensors and {STATE_FILE} there"
        )
    values = torch.load(state_path, map_location="cpu", weights_only=True)
    return ResumePoint(
        model=load_tensors(last, "model"),
        loss=load_tensors(last, "loss"),
        history=list(read_metadata(last)["history"]),
        state=TrainState(**{f.name: values[f.name] for f in fields(TrainState)}),
    )
