"""Embedding files made anywhere, read into one checked record (docs/DESIGN.md §6).

Formats (``read_embeddings`` picks by suffix):

- ``.npz``: arrays ``embeddings`` (N, d) and ``labels`` (N,); optional ``ids`` (N,) (``indices``,
  as ``python -m dml_core embed`` writes, is read as ids), ``paths`` (N,), ``class_names`` (K,)
  indexed by label, ``split`` (a scalar or (N,)). Read with ``allow_pickle=False``.
- ``.npy``: the (N, d) matrix alone; labels come from ``labels=FILE`` or a sibling
  ``<stem>.labels.npy`` / ``<stem>.labels.txt`` (one label per line).
- ``.parquet`` / ``.csv``: one row per item with a column ``label``; optional ``id``, ``path``,
  ``class_name``, ``split``; the embedding is either one column ``embedding`` (a list per row; in a
  CSV written as ``[x, y, …]``) or numbered columns sharing one prefix, ``e0 … e127``,
  ``embedding_0 …`` or pandas' ``0 … 127``. Other columns are ignored (``interop/tables.py``
  reads them).

Every format may add ``is_query`` and ``is_gallery`` (booleans, 0/1 or true/false text; an empty
cell is False): the metrics then follow the query/gallery protocol (queries search the gallery,
``dml_core.metrics.retrieval``).

Labels come out as class indices ``0 … K−1`` in the order of the sorted original labels, with
``class_names[k]`` the original name (given names, string labels, or the integer label as text).
Relative image paths are relative to the file's folder (``EmbeddingSet.image_path``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dml_core.interop.numpy_files import read_npy_arrays, read_npz_arrays
from dml_core.interop.tables import SHOWN, read_table
from dml_core.io.arrays import ArrayFileError
from dml_core.metrics._inputs import EmbeddingRangeError, check_embeddings
from dml_core.metrics.retrieval import DEFAULT_RECALL_KS

SUFFIXES = (".npz", ".npy", ".parquet", ".csv")


@dataclass(frozen=True)
class EmbeddingSet:
    """Checked embeddings of N items: everything the metrics, the app and the exports need.

    ``labels[i]`` is item i's class index into ``class_names``; ``ids``, ``paths`` and ``split``
    are per-item string arrays or None; ``source`` is the file it was read from (None if built
    in memory), against whose folder relative ``paths`` resolve.
    """

    embeddings: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    ids: np.ndarray | None = None
    paths: np.ndarray | None = None
    split: np.ndarray | None = None
    source: Path | None = None
    is_query: np.ndarray | None = None
    is_gallery: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def split_names(self) -> list[str]:
        """The splits present, in first-seen order (``["test"]`` when the file names none)."""
        if self.split is None:
            return ["test"]
        return list(dict.fromkeys(self.split.tolist()))

    def select_split(self, name: str) -> EmbeddingSet:
        """The items of split ``name`` (all items when the file names no split)."""
        if self.split is None:
            if name != "test":
                raise ValueError(f"the embedding file has no split column; asked for {name!r}")
            return self
        keep = self.split == name
        if not keep.any():
            raise ValueError(f"no item has split {name!r}; present: {self.split_names()}")
        return self.subset(np.flatnonzero(keep))

    def subset(self, rows: np.ndarray) -> EmbeddingSet:
        """The items at ``rows`` (class names kept, so labels stay comparable)."""

        def pick(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[rows]

        return replace(
            self,
            embeddings=self.embeddings[rows],
            labels=self.labels[rows],
            ids=pick(self.ids),
            paths=pick(self.paths),
            split=pick(self.split),
            is_query=pick(self.is_query),
            is_gallery=pick(self.is_gallery),
        )

    def item_ids(self) -> np.ndarray:
        """The ids, or the row numbers as text when the file gave none."""
        if self.ids is not None:
            return self.ids
        return np.arange(len(self)).astype(str)

    def image_path(self, index: int) -> Path | None:
        """Item ``index``'s image path, relative ones resolved against the file's folder."""
        if self.paths is None or not self.paths[index]:
            return None
        path = Path(str(self.paths[index])).expanduser()
        if not path.is_absolute() and self.source is not None:
            path = self.source.parent / path
        return path


def make_embedding_set(
    embeddings: object,
    labels: object,
    *,
    class_names: Sequence[str] | None = None,
    ids: object = None,
    paths: object = None,
    split: object = None,
    source: str | Path | None = None,
    is_query: object = None,
    is_gallery: object = None,
) -> EmbeddingSet:
    """Validate raw arrays into an ``EmbeddingSet``; each problem is one ``ValueError`` line."""
    matrix = _check_matrix(embeddings)
    num_items = matrix.shape[0]
    label_array = _column(labels, "labels", num_items)
    class_index, names = _class_index(label_array, class_names)
    if len(np.unique(class_index)) < 2:
        raise ValueError(
            f"embeddings need at least two classes to be evaluated; every item has label "
            f"{names[int(class_index[0])]!r}"
        )
    id_array = None if ids is None else _strings(_column(ids, "ids", num_items), "ids")
    if id_array is not None:
        _check_unique(id_array)
    path_array = None if paths is None else _strings(_column(paths, "paths", num_items), "paths")
    split_array = None
    if split is not None:
        split_values = np.asarray(split)
        if split_values.ndim == 0:
            split_values = np.full(num_items, split_values.item())
        split_array = _strings(_column(split_values, "split", num_items), "split")
    return EmbeddingSet(
        embeddings=matrix,
        labels=class_index,
        class_names=names,
        ids=id_array,
        paths=path_array,
        split=split_array,
        source=None if source is None else Path(source),
        is_query=_flags(is_query, "is_query", num_items),
        is_gallery=_flags(is_gallery, "is_gallery", num_items),
    )


def _flags(values: object, name: str, num_items: int) -> np.ndarray | None:
    """A boolean column (booleans, 0/1, or text such as true/false); an empty cell is False
    (OML leaves the columns empty on train rows). Bad cells: one line naming the row."""
    if values is None:
        return None
    from dml_core.data.csv_dataset import parse_flag  # the data package loads torchvision

    column = _column(np.asarray(values, dtype=object), name, num_items)
    flags = np.zeros(num_items, dtype=bool)
    for row, value in enumerate(column.tolist()):
        try:
            flags[row] = bool(parse_flag(value))
        except ValueError as error:
            raise ValueError(f"row {row + 1}: {name} {error}") from None
    return flags


def read_embeddings(path: str | Path, labels: str | Path | None = None) -> EmbeddingSet:
    """Read and validate an embedding file (formats in the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"embedding file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: embedding files must be {', '.join(SUFFIXES)}; got {suffix!r}")
    if labels is not None and suffix != ".npy":
        raise ValueError(f"a separate labels file goes with .npy embeddings only, not {suffix}")
    try:
        if suffix == ".npz":
            arrays = read_npz_arrays(path)
            names = arrays.get("class_names")
            return make_embedding_set(
                arrays["embeddings"],
                arrays["labels"],
                class_names=None if names is None else [str(n) for n in names.tolist()],
                ids=arrays.get("ids", arrays.get("indices")),
                paths=arrays.get("paths"),
                split=arrays.get("split"),
                source=path,
                is_query=arrays.get("is_query"),
                is_gallery=arrays.get("is_gallery"),
            )
        if suffix == ".npy":
            return make_embedding_set(*read_npy_arrays(path, labels), source=path)
        return make_embedding_set(**read_table(path), source=path)
    except KeyError as error:  # pyarrow: 'Field "e0" exists 2 times in schema'
        raise ValueError(f"{path}: column names must be distinct ({error.args[0]})") from None
    except ValueError as error:  # one line that names the file; these two keep their type
        message = str(error)
        keeps = isinstance(error, EmbeddingRangeError | ArrayFileError)
        kind = type(error) if keeps else ValueError
        raise kind(message if message.startswith(str(path)) else f"{path}: {message}") from None


# --- validation ------------------------------------------------------------------------------


def _check_matrix(embeddings: object) -> np.ndarray:
    """float32 (N, d), N, d ≥ 1, real numbers, every row finite."""
    matrix = np.asarray(embeddings)
    if matrix.dtype.kind not in "fiu":
        raise ValueError(
            f"embeddings must be real numbers (float or int), got dtype {matrix.dtype}"
        )
    if matrix.ndim != 2:
        raise ValueError(
            f"embeddings must be a 2-D array (N items, d dimensions), got shape {matrix.shape}"
        )
    if matrix.shape[0] < 2 or matrix.shape[1] < 1:
        raise ValueError(f"embeddings need at least 2 items and 1 dimension, got {matrix.shape}")
    bad_rows = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if len(bad_rows):
        raise ValueError(
            f"{len(bad_rows)} embedding row(s) hold NaN or infinite values, e.g. rows "
            f"{bad_rows[:SHOWN].tolist()}"
        )
    if not matrix.any():  # no direction to compare, no spectrum
        raise ValueError(
            f"every embedding row is zero ({matrix.shape[0]} rows): nothing to compare"
        )
    return check_embeddings(np.ascontiguousarray(matrix, dtype=np.float32))  # norm bound


def _column(values: object, name: str, num_items: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one per item), got shape {array.shape}")
    if array.shape[0] != num_items:
        raise ValueError(
            f"{name} has {array.shape[0]} entries but there are {num_items} embeddings"
        )
    return array


def _strings(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype.kind not in "iuUS" and not (
        array.dtype.kind == "O" and all(isinstance(v, str) for v in array.tolist())
    ):
        raise ValueError(f"{name} must be strings or integers, got dtype {array.dtype}")
    return np.array([str(v) for v in array.tolist()], dtype=str)


def _check_unique(ids: np.ndarray) -> None:
    values, counts = np.unique(ids, return_counts=True)
    repeated = values[counts > 1]
    if len(repeated):
        raise ValueError(
            f"ids must be unique; {len(repeated)} repeat, e.g. {str(repeated[0])!r} appears "
            f"{int(counts[counts > 1][0])} times"
        )


def _class_index(
    labels: np.ndarray, class_names: Sequence[str] | None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels → indices into the sorted distinct labels, and each class's name."""
    kind = labels.dtype.kind
    if kind == "f":
        if not np.isfinite(labels).all() or not (labels == np.round(labels)).all():
            raise ValueError("float labels must be whole numbers without NaN")
        labels = labels.astype(np.int64)
    elif kind == "O" and all(isinstance(v, str) for v in labels.tolist()):
        labels = labels.astype(str)
    elif kind not in "iuUS":
        raise ValueError(f"labels must be integers or strings, got dtype {labels.dtype}")
    originals, index = np.unique(labels, return_inverse=True)
    if class_names is None:
        names = tuple(str(v) for v in originals.tolist())
    else:
        if labels.dtype.kind not in "iu":
            raise ValueError("class_names go with integer labels (an index into class_names)")
        if originals.min() < 0 or originals.max() >= len(class_names):
            raise ValueError(
                f"labels must index class_names (0 … {len(class_names) - 1}); found labels "
                f"{originals.min()} … {originals.max()}"
            )
        names = tuple(str(class_names[int(v)]) for v in originals.tolist())
    return index.reshape(-1).astype(np.int64), names


def evaluate_embeddings(
    record: EmbeddingSet, ks: Sequence[int] = DEFAULT_RECALL_KS, *, approximate: str | None = None
) -> dict[str, float]:
    """Every metric of an embedding set, keyed as ``evaluate --checkpoint`` keys them.

    Per split (``test`` when the file names none; ``eval_train`` is reported as ``train``) the
    engine's ``split_metrics``: retrieval metrics (except on ``train``) and embedding-space metrics
    (docs/DESIGN.md §3). Recall@k with k ≥ the split's size is left out. ``approximate``: as in
    ``split_metrics``.
    """
    import torch

    from dml_core.engine.evaluation import split_metrics

    metrics: dict[str, float] = {}
    for name in record.split_names():
        part = record.select_split(name)
        usable = [int(k) for k in ks if 0 < k < len(part)]
        if not usable:
            raise ValueError(f"split {name!r} has {len(part)} items: too few for Recall@k")
        key = "train" if name == "eval_train" else name
        protocol = {"is_query": part.is_query, "is_gallery": part.is_gallery}
        if name != "eval_train" and part.is_gallery is not None:
            usable = [k for k in usable if k < int(part.is_gallery.sum())]
        points = torch.from_numpy(part.embeddings)
        metrics.update(
            split_metrics(key, points, part.labels, usable, approximate=approximate, **protocol)
        )
    return metrics
