"""Bounds on numpy files read from disk (docs/DESIGN.md §9): the header of every ``.npy`` — alone,
or each member of a ``.npz`` — is read and checked before numpy allocates anything.

numpy trusts a header's shape: a 300-byte ``.npz`` whose member claims (2²⁰, 2¹⁶) float32 makes
``np.load`` ask for 256 GiB. Here a header is refused with one ``ArrayFileError`` line when the
array it claims is larger than ``DML_EXPLORER_MAX_ARRAY_BYTES`` (default 4 GiB) or than the bytes
the file (the zip member) actually holds after the header. Members that are not ``.npy`` arrays are
bounded by their uncompressed size alike. Object arrays (pickles) are left to
``np.load(allow_pickle=False)``, which refuses them.
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

MAX_ARRAY_BYTES_VARIABLE = "DML_EXPLORER_MAX_ARRAY_BYTES"
DEFAULT_MAX_ARRAY_BYTES = 1 << 32
"""4 GiB per array: a million 1,024-d float32 embeddings."""
MAX_HEADER_SIZE = 10_000
"""numpy's own default bound on a ``.npy`` header's length (characters)."""


class ArrayFileError(ValueError):
    """A ``.npy``/``.npz`` whose header cannot be read or claims more than it may or than it holds."""


@dataclass(frozen=True)
class ArrayHeader:
    """What a ``.npy`` header claims: shape, dtype, and the bytes its data takes."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool

    @property
    def nbytes(self) -> int:
        """Exact, in Python integers (never overflows); 0 for object arrays (a pickle)."""
        return 0 if self.dtype.hasobject else math.prod(self.shape) * self.dtype.itemsize


def max_array_bytes() -> int:
    """``$DML_EXPLORER_MAX_ARRAY_BYTES`` (a positive integer), else 4 GiB."""
    configured = os.environ.get(MAX_ARRAY_BYTES_VARIABLE, "").strip()
    if not configured:
        return DEFAULT_MAX_ARRAY_BYTES
    if not configured.isdigit() or int(configured) < 1:
        raise ArrayFileError(
            f"{MAX_ARRAY_BYTES_VARIABLE}={configured!r} must be a positive integer (bytes)"
        )
    return int(configured)


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} bytes"


def _check_size(what: str, claimed: int, available: int | None, limit: int) -> None:
    if claimed > limit:
        raise ArrayFileError(
            f"{what} is {_size(claimed)}, beyond the limit of {_size(limit)} per array "
            f"({MAX_ARRAY_BYTES_VARIABLE} raises it)"
        )
    if available is not None and claimed > available:
        raise ArrayFileError(
            f"{what} is {_size(claimed)} but only {available} bytes follow its header "
            "(truncated or crafted)"
        )


def read_npy_header(handle: IO[bytes], name: str, available: int | None = None) -> ArrayHeader:
    """Read and check the header at ``handle``'s position; ``available`` is the size of the whole
    ``.npy`` (file or zip member) when known. Leaves ``handle`` at the start of the data."""
    from numpy.lib import format as npy_format

    start = handle.tell() if available is not None else 0
    try:
        version = npy_format.read_magic(handle)
        reader = (
            npy_format.read_array_header_1_0
            if version == (1, 0)
            else npy_format.read_array_header_2_0  # 2.0 and 3.0 share the layout
        )
        shape, fortran_order, dtype = reader(handle, max_header_size=MAX_HEADER_SIZE)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as error:
        text = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ArrayFileError(f"array {name!r} has no readable .npy header ({text[:200]})") from None
    header = ArrayHeader(tuple(int(n) for n in shape), np.dtype(dtype), bool(fortran_order))
    left = None if available is None else available - (handle.tell() - start)
    shown = f"array {name!r} of shape {header.shape} and dtype {header.dtype}"
    _check_size(shown, header.nbytes, left, max_array_bytes())
    return header


def check_npy(path: str | os.PathLike) -> ArrayHeader:
    """The checked header of the ``.npy`` file at ``path`` (see the module docstring)."""
    path = Path(path)
    with open(path, "rb") as handle:
        return read_npy_header(handle, path.name, os.fstat(handle.fileno()).st_size)


def check_npz(path: str | os.PathLike) -> dict[str, ArrayHeader | None]:
    """Every member of the ``.npz`` at ``path`` by the key ``np.load`` gives it (``.npy``
    dropped): its checked header, or None for a member that is not a ``.npy`` array (bounded by
    its uncompressed size). ``zipfile.BadZipFile`` when it is no zip."""
    limit = max_array_bytes()
    members: dict[str, ArrayHeader | None] = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            key = info.filename.removesuffix(".npy")
            if info.is_dir():
                continue
            with archive.open(info) as member:
                is_npy = member.read(6) == b"\x93NUMPY"
            if not is_npy:
                _check_size(f"member {info.filename!r}", info.file_size, None, limit)
                members[key] = None
                continue
            with archive.open(info) as member:
                members[key] = read_npy_header(member, key, info.file_size)
    return members
