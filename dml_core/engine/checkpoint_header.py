"""A checkpoint's header, read and checked without loading a tensor, and without torch.

:func:`read_metadata` reads the safetensors header of a ``.safetensors`` file and the JSON document
under ``dml_explorer`` (docs/DESIGN.md §6), checked against its schema (``header_schema``); every
way a file can fail is one :class:`CheckpointError` naming it. The app lists and opens checkpoints
through this module alone, so a page that shows a stored evaluation never loads torch;
:mod:`dml_core.engine.checkpoint` writes and loads the tensors.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from dml_core.engine.header_schema import document_problem, is_count

FORMAT_VERSION = 1
METADATA_KEY = "dml_explorer"
MAX_HEADER_BYTES = 100_000_000


class CheckpointError(ValueError):
    """A file that is not a DML Explorer checkpoint, or one that does not match the model."""


class WeightsOnlyError(CheckpointError):
    """A well-formed safetensors file without DML Explorer's metadata: plain weights (such as
    ``checkpoints/glyphs-backbone.safetensors``, read by ``--pretrained``), not a checkpoint."""


def refusal(
    path: Path, reason: str, kind: type[CheckpointError] = CheckpointError
) -> CheckpointError:
    """The one error a refused file raises: ``<path> <reason>`` and what is expected instead."""
    return kind(
        f"{path} {reason}. Expected a .safetensors checkpoint written by `python -m dml_core train`; "
        "DML Explorer never unpickles files."
    )


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The checkpoint's JSON document, read from the header alone (no tensor is loaded) and checked
    against its schema (``_check_header``, ``_check_document``): a malformed, truncated, padded or
    crafted file is one ``CheckpointError`` that names it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(9)
        (header_size,) = struct.unpack("<Q", head[:8]) if len(head) >= 8 else (None,)
        looks_safetensors = header_size is not None and head[8:9] == b"{"
        if not looks_safetensors:
            if head[:4] == b"PK\x03\x04":
                raise refusal(
                    path, "is a zip archive (a torch.save pickle or a .npz) and is refused"
                )
            if head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05":
                raise refusal(path, "is a pickle / torch.save file and is refused")
            raise refusal(path, "is not a safetensors file or is truncated (no header)")
        if header_size > size - 8 or header_size > MAX_HEADER_BYTES:
            raise refusal(path, "is not a safetensors file or is truncated (bad header length)")
        handle.seek(8)
        header = _parse_json(path, handle.read(header_size), "safetensors header")
    data_end = _check_header(path, header)
    if 8 + header_size + data_end > size:
        raise refusal(
            path, f"is truncated ({size} bytes, header promises {8 + header_size + data_end})"
        )
    if 8 + header_size + data_end < size:
        raise refusal(path, f"has {size - 8 - header_size - data_end} bytes after its tensor data")
    raw = (header.get("__metadata__") or {}).get(METADATA_KEY)
    if raw is None:
        raise refusal(
            path,
            "is a safetensors file but not a DML Explorer checkpoint (no metadata)",
            WeightsOnlyError,
        )
    document = _parse_json(path, raw.encode(), "metadata")
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise refusal(
            path, f"has checkpoint format version {version!r}; this code reads {FORMAT_VERSION}"
        )
    _check_document(path, document)
    return document


def _parse_json(path: Path, data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise refusal(path, f"has an unreadable {what}") from None
    if not isinstance(value, dict):
        raise refusal(path, f"has a {what} that is not a JSON object")
    return value


def _check_header(path: Path, header: dict[str, Any]) -> int:
    """Every tensor entry has a dtype, a shape of sizes and ordered offsets; ``__metadata__`` maps
    strings to strings. Returns the end of the tensor data."""
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise refusal(path, "has a safetensors __metadata__ that is not a map of strings")
    data_end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if (
            not isinstance(entry.get("dtype") if isinstance(entry, dict) else None, str)
            or not isinstance(shape, list)
            or not all(is_count(n) for n in shape)
            or not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(is_count(n) for n in offsets)
            or offsets[0] > offsets[1]
        ):
            raise refusal(path, f"has a malformed entry for tensor {name[:80]!r}")
        data_end = max(data_end, offsets[1])
    return data_end


def _check_document(path: Path, document: dict[str, Any]) -> None:
    """The fields readers use have the types and bounds of docs/DESIGN.md §6 (``header_schema``)."""
    problem = document_problem(document)
    if problem is not None:
        raise refusal(path, problem)
