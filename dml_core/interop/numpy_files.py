"""The numpy formats of embedding files (``.npz``, ``.npy`` + labels), read into plain arrays for
``embeddings_file``: never unpickled (``allow_pickle=False``), every ``.npy`` header checked before
numpy allocates (``dml_core.io.arrays``), each problem one ``ValueError`` line without numpy's
advice to load pickles.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from dml_core.interop.tables import parse_text_labels
from dml_core.io.arrays import ArrayFileError, check_npy, check_npz


def _starts_with(path: Path, magic: bytes) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(magic)) == magic


def read_npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of an embeddings ``.npz`` by name (``embeddings`` and ``labels`` present);
    each problem is one ``ValueError`` line (the caller adds the path)."""
    try:
        if _starts_with(path, b"PK"):  # every header checked before numpy allocates
            check_npz(path)
        archive = np.load(path, allow_pickle=False)
    except ArrayFileError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        why = "empty" if path.stat().st_size == 0 else _reason(error)
        raise ValueError(f"not a .npz archive ({why}); expected np.savez's zip of arrays") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError("holds a single .npy array, not a .npz archive of embeddings and labels")
    with archive:
        arrays = {name: _load_array(archive, name) for name in archive.files}
    missing = [name for name in ("embeddings", "labels") if name not in arrays]
    if missing:
        raise ValueError(
            f"the .npz lacks {missing}; expected arrays embeddings (N, d) and labels (N,), "
            f"found {sorted(arrays)}"
        )
    return arrays


def _load_array(archive: np.lib.npyio.NpzFile, name: str) -> np.ndarray:
    try:
        return archive[name]
    except ValueError as error:
        if "allow_pickle" not in str(error):
            raise ValueError(f"array {name!r} cannot be read ({_reason(error)})") from None
        raise ValueError(
            f"array {name!r} holds Python objects (pickled), which are never loaded; "
            "store strings as a fixed-width unicode array (np.array(values, dtype=str))"
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise ValueError(f"array {name!r} cannot be read ({_reason(error)})") from None


def _reason(error: BaseException) -> str:
    """An error's first line; for a file that is no zip, never numpy's advice to load pickles."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return "not a zip file" if "allow_pickle" in text or "pickled" in text else text


def read_npy_arrays(path: Path, labels: str | Path | None) -> tuple[np.ndarray, np.ndarray]:
    """The (N, d) matrix of a ``.npy`` and its labels (``labels``, or a sibling
    ``<stem>.labels.npy``/``.labels.txt``)."""
    matrix = _load_npy(path, "embeddings")
    if labels is None:
        siblings = [path.with_suffix(".labels.npy"), path.with_suffix(".labels.txt")]
        found = [p for p in siblings if p.is_file()]
        if not found:
            raise ValueError(
                f"a .npy holds no labels: pass a labels file or put one at {siblings[0].name} "
                f"or {siblings[1].name} beside it"
            )
        labels = found[0]
    labels = Path(labels)
    if not labels.is_file():
        raise FileNotFoundError(f"labels file {labels} does not exist")
    if labels.suffix.lower() == ".npy":
        label_values = _load_npy(labels, "labels")
    else:
        lines = labels.read_text(encoding="utf-8").splitlines()
        label_values = parse_text_labels([line.strip() for line in lines if line.strip()])
    return matrix, label_values


def _load_npy(path: Path, what: str) -> np.ndarray:
    try:
        if _starts_with(path, b"\x93NUMPY"):  # the header checked before numpy allocates
            check_npy(path)
        loaded = np.load(path, allow_pickle=False)
    except ArrayFileError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        if str(error).startswith("Object arrays"):  # a real .npy of Python objects
            raise ValueError(
                f"{path.name}: the {what} array holds Python objects (pickled)"
            ) from None
        why = "empty" if path.stat().st_size == 0 else _reason(error)
        raise ValueError(f"{path.name} is not a readable .npy file ({why})") from None
    if not isinstance(loaded, np.ndarray):
        loaded.close()
        raise ValueError(f"{path.name} is a .npz archive, not a .npy array")
    return loaded


def npz_problem(path: str | Path) -> str | None:
    """For a listing: why the ``.npz`` at ``path`` cannot be opened as embeddings, from its headers
    and its labels alone (the embeddings are not read: all-zero or out-of-range rows show when it
    is opened); None when it may. One line without the path."""
    path = Path(path)
    try:
        members = check_npz(path)
    except ArrayFileError as error:
        return str(error)
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        why = "empty" if path.stat().st_size == 0 else _reason(error)
        return f"not a .npz archive ({why})"
    embeddings, labels = members.get("embeddings"), members.get("labels")
    if embeddings is None or labels is None:
        return f"has no embeddings and labels arrays (found {sorted(members)[:5]})"
    shape = embeddings.shape
    if len(shape) != 2 or shape[0] < 2 or shape[1] < 1 or embeddings.dtype.kind not in "fiu":
        found = f"shape {shape} and dtype {embeddings.dtype}"
        return f"has embeddings of {found} (expected N ≥ 2 × d ≥ 1 numbers)"
    if labels.shape != (shape[0],):
        return f"has labels of shape {labels.shape} for {shape[0]} embeddings"
    try:
        with np.load(path, allow_pickle=False) as archive:
            values = _load_array(archive, "labels")
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        return _reason(error)
    if len(np.unique(values)) < 2:
        return "has one class only (evaluation needs at least two)"
    return None
