"""Which checkpoints the app may open, the datasets behind them, and their embeddings.

Only ``.safetensors`` files under the allowed roots (:func:`app.settings.allowed_roots`:
``<repo>/checkpoints``, the runs folder and ``DML_EXPLORER_CHECKPOINT_DIRS``) are opened.
Paths are resolved (symlinks followed) before the check, so a link pointing outside is refused.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.cache import file_version
from app.settings import CHECKPOINT_DIRS_VARIABLE, REPO_ROOT, allowed_roots
from dml_core.config import TrainConfig
from dml_core.data.splits import build_split
from dml_core.engine.checkpoint import CheckpointError, read_metadata

CHECKPOINT_SUFFIX = ".safetensors"
DATASET_ERRORS = (FileNotFoundError, ValueError, OSError, TypeError, KeyError)
"""What building a checkpoint's dataset raises when the data is not on this machine."""


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


_readable: dict[Path, tuple[int, int, bool]] = {}
"""Per checkpoint path: the (mtime, size) whose header was last read, and whether it was readable."""


def _is_readable_checkpoint(path: Path) -> bool:
    """Whether the header parses as a DML Explorer checkpoint; read once per file version."""
    _, mtime_ns, size = file_version(path)
    known = _readable.get(path)
    if known is not None and known[:2] == (mtime_ns, size):
        return known[2]
    try:
        read_metadata(path)
        readable = True
    except Exception:  # any unreadable header (issue: crafted files) leaves the file out
        readable = False
    _readable[path] = (mtime_ns, size, readable)
    return readable


def discover_checkpoints() -> list[CheckpointEntry]:
    """Every readable DML Explorer checkpoint under the allowed roots, sorted by label.

    A header is read again only when its file's mtime or size changed.
    """
    roots = allowed_roots()
    found: dict[Path, CheckpointEntry] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for candidate in root.rglob(f"*{CHECKPOINT_SUFFIX}"):
            try:
                path = resolve_checkpoint(candidate)
                if not _is_readable_checkpoint(path):
                    continue
            except (CheckpointError, OSError):
                continue
            found.setdefault(path, CheckpointEntry(path, _label(path, roots)))
    return sorted(found.values(), key=lambda entry: entry.label)


def checkpoint_config(metadata: dict[str, Any]) -> TrainConfig:
    return TrainConfig.from_dict(metadata["config"])


@functools.lru_cache(maxsize=8)
def _split_dataset(config_json: str, split: str) -> Any:
    return build_split(TrainConfig.from_dict(json.loads(config_json)), split)


def split_dataset(config: dict[str, Any], split: str = "test") -> Any:
    """The dataset of ``split`` that a checkpoint's (or run's) config names, built once per
    process; raises one of :data:`DATASET_ERRORS` when its data is not on this machine."""
    return _split_dataset(json.dumps(config, sort_keys=True), split)


def dataset_problem(metadata: dict[str, Any], split: str = "test") -> str | None:
    """None if the checkpoint's dataset can be built here, else the reason it cannot."""
    try:
        split_dataset(metadata["config"], split)
    except DATASET_ERRORS as error:
        return f"{type(error).__name__}: {error}"
    return None


def embed_split(path: Path, split: str) -> Embedded:
    """Embed ``split`` ("test" or "eval_train") of the checkpoint's dataset on the CPU.

    The result is cached on disk beside the projections, keyed by the checkpoint's path, mtime and
    the split, so a fresh app process shows a checkpoint it has seen before at once.
    """
    from app.projection import projection_key, read_arrays, write_arrays
    from dml_core.engine.evaluation import embed_checkpoint

    path = resolve_checkpoint(path)
    key = projection_key(path, split, "embeddings")
    cached = read_arrays(key)
    if cached is not None and {"embeddings", "labels"} <= cached.keys():
        return Embedded(cached["embeddings"], cached["labels"], split)
    computed = embed_checkpoint(path, split, device="cpu", amp="off")
    embedded = Embedded(
        computed.embeddings.numpy().astype(np.float32), np.asarray(computed.labels), split
    )
    write_arrays(key, embeddings=embedded.embeddings, labels=embedded.labels)
    return embedded


def stored_history(metadata: dict[str, Any]) -> list[dict[str, float]]:
    """The per-evaluation metric history the checkpoint carries (may be empty)."""
    return list(metadata.get("history") or [])
