"""Which checkpoints the app may open, the datasets behind them, and their embeddings.

A checkpoint's test split comes from the evaluation it carries (:func:`checkpoint_evaluation`,
docs/DESIGN.md §6); only one without a readable section is embedded here, once, and cached.

Only ``.safetensors`` files under the allowed roots (:func:`app.settings.allowed_roots`:
``<repo>/checkpoints``, the runs folder and ``DML_EXPLORER_CHECKPOINT_DIRS``) are opened.
Paths are resolved (symlinks followed) before the check, so a link pointing outside is refused.
"""

from __future__ import annotations

import errno
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.cache import cache_key, file_version, read_arrays, write_arrays
from app.settings import CHECKPOINT_DIRS_VARIABLE, REPO_ROOT, allowed_roots
from dml_core.config import TrainConfig
from dml_core.engine.checkpoint_header import CheckpointError, WeightsOnlyError, read_metadata
from dml_core.engine.stored_section import StoredEvaluation, StoredEvaluationError, read_evaluation

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


def resolve_under_roots(path: str | Path, folders: str = "checkpoint folders") -> Path:
    """The resolved path (symlinks followed) if it lies under an allowed root, else raise;
    ``folders`` names the roots in the message."""
    candidate = Path(path).expanduser()
    if not candidate.is_absolute():
        candidate = REPO_ROOT / candidate
    try:
        resolved = candidate.resolve()
    except RuntimeError:  # Python < 3.13 raises this for a symlink loop
        raise OSError(errno.ELOOP, "a symlink loop", str(path)) from None
    roots = allowed_roots()
    if not any(resolved.is_relative_to(root) for root in roots):
        names = ", ".join(str(root) for root in roots)
        raise UnsafeCheckpointError(
            f"{path} lies outside the {folders} the app may open ({names}); "
            f"add its folder to {CHECKPOINT_DIRS_VARIABLE} to open it"
        )
    return resolved


def resolve_checkpoint(path: str | Path) -> Path:
    """The resolved path if it is a ``.safetensors`` file under an allowed root, else raise."""
    resolved = resolve_under_roots(path)
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


_header_problems: dict[Path, tuple[int, int, str | None]] = {}
"""Per checkpoint path: the (mtime, size) whose header was last read, and why it was unreadable
(None when it was readable)."""


WEIGHTS_ONLY = "plain weights (no DML Explorer metadata)"
"""What :func:`_header_problem` returns for a :class:`WeightsOnlyError` file."""


def _header_problem(path: Path) -> str | None:
    """Why the header does not parse as a DML Explorer checkpoint (None when it does): the
    :class:`CheckpointError` message without the leading path. Read once per file version."""
    _, mtime_ns, size = file_version(path)
    known = _header_problems.get(path)
    if known is not None and known[:2] == (mtime_ns, size):
        return known[2]
    try:
        read_metadata(path)
        problem = None
    except WeightsOnlyError:
        problem = WEIGHTS_ONLY
    except CheckpointError as error:
        problem = str(error).removeprefix(f"{path} ")
    except Exception as error:  # any other unreadable header (crafted files) is listed, not raised
        problem = f"{type(error).__name__}: {error}"
    _header_problems[path] = (mtime_ns, size, problem)
    return problem


def discover_checkpoints(*, unreadable: list[str] | None = None) -> list[CheckpointEntry]:
    """Every readable DML Explorer checkpoint under the allowed roots, sorted by label.

    A header is read again only when its file's mtime or size changed. Each ``.safetensors`` file
    whose header is unreadable adds ``"<label>: <why>"`` to ``unreadable`` when a list is given;
    plain weights without DML Explorer's metadata (a ``--pretrained`` backbone) are skipped.
    """
    roots = allowed_roots()
    found: dict[Path, CheckpointEntry] = {}
    problems: dict[Path, str] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for candidate in root.rglob(f"*{CHECKPOINT_SUFFIX}"):
            try:
                path = resolve_checkpoint(candidate)
                problem = _header_problem(path)
            except OSError as error:  # a loop is listed; a file gone meanwhile is not
                if error.errno == errno.ELOOP:
                    problems.setdefault(candidate, f"{_label(candidate, roots)}: a symlink loop")
                continue
            except CheckpointError:
                continue
            if problem is None:
                found.setdefault(path, CheckpointEntry(path, _label(path, roots)))
            elif problem != WEIGHTS_ONLY:  # plain weights are not listed, nor a problem
                problems.setdefault(path, f"{_label(path, roots)}: {problem}")
    if unreadable is not None:
        unreadable.extend(sorted(problems.values()))
    return sorted(found.values(), key=lambda entry: entry.label)


@functools.lru_cache(maxsize=8)
def _split_dataset(config_json: str, split: str) -> Any:
    from dml_core.data.splits import build_split  # torchvision: only when pictures are shown

    return build_split(TrainConfig.from_dict(json.loads(config_json)), split)


def split_dataset(config: dict[str, Any], split: str = "test") -> Any:
    """The dataset of ``split`` that a checkpoint's (or run's) config names, built once per
    process; raises one of :data:`DATASET_ERRORS` when its data is not on this machine."""
    return _split_dataset(json.dumps(config, sort_keys=True), split)


@dataclass(frozen=True)
class CheckpointView:
    """What the app shows of a checkpoint's test split, and where it came from."""

    evaluation: StoredEvaluation
    source: str
    """``stored`` (the checkpoint's own section), ``cache`` or ``computed`` (from the dataset)."""
    note: str | None
    """Why it was not read from the checkpoint (None when it was)."""


MASKS = ("is_query", "is_gallery")
"""The query/gallery masks a computed evaluation keeps in the cache when it has them."""


def _cached_evaluation(key: str) -> StoredEvaluation | None:
    arrays = read_arrays(key)
    names = {"embeddings", "labels", "item_ids", "pca", "class_names", "metrics"}
    if arrays is None or not names <= arrays.keys():
        return None
    masks = {name: arrays[name].astype(bool) if name in arrays else None for name in MASKS}
    return StoredEvaluation(
        split="test",
        embeddings=arrays["embeddings"],
        labels=arrays["labels"].astype(np.int64),
        item_ids=arrays["item_ids"].astype(np.int64),
        class_names=[str(name) for name in arrays["class_names"]],
        metrics=json.loads(str(arrays["metrics"])),
        pca=arrays["pca"],
        **masks,
    )


def checkpoint_evaluation(path: str | Path) -> CheckpointView:
    """The checkpoint's test-split evaluation: its stored section (docs/DESIGN.md §6) when it has a
    readable one; else the app's disk cache; else computed once from the dataset (embeddings,
    metrics, PCA; UMAP follows in the background) and cached. Raises one of
    :data:`DATASET_ERRORS` when it must be computed and the dataset is not on this machine."""
    path = resolve_checkpoint(path)
    try:
        stored = read_evaluation(path)
        note = "it carries no stored evaluation (trained elsewhere or before it existed)"
    except StoredEvaluationError as error:
        stored, note = None, str(error)
    if stored is not None:
        return CheckpointView(stored, "stored", None)
    key = cache_key(path, "test", "evaluation")
    cached = _cached_evaluation(key)
    if cached is not None:
        return CheckpointView(cached, "cache", note)
    from dml_core.engine.stored_evaluation import open_evaluation  # torch: only to compute

    computed, _ = open_evaluation(path, device="cpu")
    masks = {name: getattr(computed, name) for name in MASKS}
    write_arrays(
        key,
        embeddings=computed.embeddings,
        labels=computed.labels,
        item_ids=computed.item_ids,
        pca=computed.pca,
        class_names=np.array(computed.class_names, dtype=str),
        metrics=np.array(json.dumps(computed.metrics)),
        **{name: np.asarray(mask, dtype=bool) for name, mask in masks.items() if mask is not None},
    )
    return CheckpointView(computed, "computed", note)
