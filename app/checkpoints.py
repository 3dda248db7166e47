"""Which checkpoints the app may open, and the embeddings it computes from them.

Only ``.safetensors`` files under the known roots are opened: ``<repo>/checkpoints``, the runs
folder (``<repo>/runs`` or ``DML_EXPLORER_RUNS_DIR``) and every folder in
``DML_EXPLORER_CHECKPOINT_DIRS`` (``os.pathsep``-separated).
Paths are resolved (symlinks followed) before the check, so a link pointing outside is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.runs import runs_dir
from dml_core.config import TrainConfig
from dml_core.engine.checkpoint import CheckpointError, load_checkpoint, read_metadata

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT_DIRS_VARIABLE = "DML_EXPLORER_CHECKPOINT_DIRS"
CHECKPOINT_SUFFIX = ".safetensors"


class UnsafeCheckpointError(CheckpointError):
    """A path outside the allowed roots, or a file that is not ``.safetensors``."""


@dataclass(frozen=True)
class CheckpointEntry:
    """A discovered checkpoint: its resolved path and a short label for pickers."""

    path: Path
    label: str


@dataclass(frozen=True)
class Embedded:
    """One split of a checkpoint embedded: float32 embeddings (N, d) and labels (N,)."""

    embeddings: np.ndarray
    labels: np.ndarray
    split: str


def allowed_roots() -> list[Path]:
    """``checkpoints/``, ``runs/`` and the folders in ``DML_EXPLORER_CHECKPOINT_DIRS``, resolved."""
    roots = [REPO_ROOT / "checkpoints", runs_dir()]
    extra = os.environ.get(CHECKPOINT_DIRS_VARIABLE, "")
    roots += [Path(part).expanduser() for part in extra.split(os.pathsep) if part.strip()]
    unique: list[Path] = []
    for root in roots:
        resolved = root.resolve()
        if resolved not in unique:
            unique.append(resolved)
    return unique


def resolve_checkpoint(path: str | Path) -> Path:
    """The resolved path if it is a ``.safetensors`` file under an allowed root, else raise."""
    candidate = Path(path).expanduser()
    if not candidate.is_absolute():
        candidate = REPO_ROOT / candidate
    resolved = candidate.resolve()
    roots = allowed_roots()
    if not any(resolved.is_relative_to(root) for root in roots):
        names = ", ".join(str(root) for root in roots)
        raise UnsafeCheckpointError(
            f"{path} lies outside the checkpoint folders the app may open ({names}); "
            f"add its folder to {CHECKPOINT_DIRS_VARIABLE} to open it"
        )
    if resolved.suffix != CHECKPOINT_SUFFIX:
        raise UnsafeCheckpointError(
            f"{path} is not a .safetensors file; the app opens only .safetensors checkpoints "
            "(it never unpickles .pt/.pth/.ckpt files)"
        )
    if not resolved.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return resolved


def _label(path: Path, roots: list[Path]) -> str:
    for root in roots:
        if path.is_relative_to(root):
            return f"{root.name}/{path.relative_to(root)}"
    return str(path)


def discover_checkpoints() -> list[CheckpointEntry]:
    """Every readable DML Explorer checkpoint under the allowed roots, sorted by label."""
    roots = allowed_roots()
    found: dict[Path, CheckpointEntry] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for candidate in root.rglob(f"*{CHECKPOINT_SUFFIX}"):
            try:
                path = resolve_checkpoint(candidate)
                read_metadata(path)
            except (CheckpointError, OSError, ValueError):
                continue
            found.setdefault(path, CheckpointEntry(path, _label(path, roots)))
    return sorted(found.values(), key=lambda entry: entry.label)


def checkpoint_config(metadata: dict[str, Any]) -> TrainConfig:
    return TrainConfig.from_dict(metadata["config"])


def dataset_problem(metadata: dict[str, Any], split: str = "test") -> str | None:
    """None if the checkpoint's dataset can be built here, else the reason it cannot."""
    from dml_core.engine.evaluation import build_split

    config = checkpoint_config(metadata)
    try:
        build_split(config, split)
    except (FileNotFoundError, ValueError, OSError, TypeError, KeyError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def embed_split(path: Path, split: str) -> Embedded:
    """Embed ``split`` ("test" or "eval_train") of the checkpoint's dataset on the CPU.

    The result is cached on disk beside the projections, keyed by the checkpoint's path, mtime and
    the split, so a fresh app process shows a checkpoint it has seen before at once.
    """
    import torch

    from app.projection import projection_key, read_arrays, write_arrays
    from dml_core.engine.evaluation import build_split, compute_embeddings

    path = resolve_checkpoint(path)
    key = projection_key(path, split, "embeddings")
    cached = read_arrays(key)
    if cached is not None and {"embeddings", "labels"} <= cached.keys():
        return Embedded(cached["embeddings"], cached["labels"], split)
    model, metadata = load_checkpoint(path)
    config = checkpoint_config(metadata)
    dataset = build_split(config, split)
    embeddings, labels = compute_embeddings(
        model, dataset, device=torch.device("cpu"), batch_size=config.eval_batch_size, amp="off"
    )
    embedded = Embedded(embeddings.numpy().astype(np.float32), np.asarray(labels), split)
    write_arrays(key, embeddings=embedded.embeddings, labels=embedded.labels)
    return embedded


def stored_history(metadata: dict[str, Any]) -> list[dict[str, float]]:
    """The per-evaluation metric history the checkpoint carries (may be empty)."""
    return list(metadata.get("history") or [])
