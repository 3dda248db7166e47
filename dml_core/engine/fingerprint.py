"""A checkpoint file as read: its identity on disk and a digest of its weights.

``stored_evaluation`` takes one before it computes a checkpoint's evaluation and checks it again
before writing, so one file's evaluation is never stored beside another's weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

Fingerprint = tuple[int, int, int, str]
"""(inode, size, mtime_ns, SHA-256 of the weights): a checkpoint as read."""

EVALUATION_PREFIX = "evaluation."
"""Tensors under this prefix are the stored evaluation, not weights (left out of the digest)."""


def weights_digest(tensors: Mapping[str, Any]) -> str:
    """SHA-256 over every tensor but the evaluation section: name, dtype, shape, bytes, by name
    (0-d tensors too: a BatchNorm's ``num_batches_tracked``)."""
    import torch  # here: readers of the section import EVALUATION_PREFIX without torch

    digest = hashlib.sha256()
    for name in sorted(n for n in tensors if not n.startswith(EVALUATION_PREFIX)):
        tensor = tensors[name]
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def stat_key(path: Path) -> tuple[int, int, int]:
    """(inode, size, mtime_ns) of the file now."""
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def checkpoint_fingerprint(path: str | Path) -> Fingerprint:
    """The file's identity (inode, size, mtime_ns) and its weights' SHA-256, read now."""
    from safetensors.torch import load_file

    path = Path(path)
    return (*stat_key(path), weights_digest(load_file(str(path))))
