"""What Inspect and Compare can open: this project's checkpoints and embedding files made anywhere.

Both must lie under the allowed roots (:func:`app.settings.allowed_roots`), checked on the resolved
path (symlinks followed), exactly as :func:`app.checkpoints.resolve_checkpoint` checks checkpoints.
Embedding files are ``.npz``, ``.npy`` (+ a labels file beside it), ``.parquet`` and ``.csv`` in the
layouts :mod:`dml_core.interop.embeddings_file` reads. Their thumbnails come from the image paths
they name, and only from paths that also resolve under the allowed roots; otherwise the pages show
index and class without pictures.

Every opened split carries a ``signature`` naming the items it holds: for a checkpoint its dataset
(name, options, data root) and split, for a file a hash of its ids (row numbers when it has none)
and labels. Per-item comparisons need equal signatures.
"""

from __future__ import annotations

import errno
import hashlib
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from app.analysis import display_names
from app.cache import file_version
from app.checkpoints import (
    DATASET_ERRORS,
    UnsafeCheckpointError,
    checkpoint_evaluation,
    discover_checkpoints,
    resolve_checkpoint,
    resolve_under_roots,
    split_dataset,
)
from app.settings import allowed_roots
from dml_core.engine.checkpoint import read_metadata
from dml_core.engine.stored_evaluation import StoredEvaluation
from dml_core.interop import EmbeddingSet, make_embedding_set, read_embeddings

EMBEDDING_SUFFIXES = (".npz", ".npy", ".parquet", ".csv")
SKIPPED_FOLDERS = frozenset({"snapshots"})
"""Folders of npz files that are not embedding files for Inspect (a run's per-epoch snapshots)."""
LABELS_SIDECAR = ".labels"

Thumbnail = Callable[[int, int], Image.Image | None]
"""``thumbnail(index, size)`` → the item's picture, or None."""


@dataclass(frozen=True)
class Source:
    """Something the pages can open: ``kind`` is ``"checkpoint"`` or ``"embeddings"``."""

    path: Path
    label: str
    kind: str


@dataclass(frozen=True)
class Opened:
    """One split of a source, as the pages use it (picklable, so Streamlit can cache it)."""

    record: EmbeddingSet
    split: str
    signature: str
    kind: str

    @property
    def embeddings(self) -> np.ndarray:
        return self.record.embeddings

    @property
    def labels(self) -> np.ndarray:
        return self.record.labels

    @property
    def is_query(self) -> np.ndarray | None:
        """Per item: a query (the query/gallery protocol); None with ``is_gallery``: every item is
        both (leave-one-out)."""
        return self.record.is_query

    @property
    def is_gallery(self) -> np.ndarray | None:
        return self.record.is_gallery

    @property
    def class_names(self) -> list[str]:
        """The class names as displayed (:func:`app.analysis.display_names`)."""
        return display_names(self.record.class_names)


def is_embedding_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in EMBEDDING_SUFFIXES


def resolve_source(path: str | Path) -> Source:
    """A checkpoint (``.safetensors``, via :func:`app.checkpoints.resolve_checkpoint`) or an
    embedding file under the allowed roots; anything else is refused with one clear line."""
    if not is_embedding_file(path):
        resolved = resolve_checkpoint(path)
        return Source(resolved, _label(resolved), "checkpoint")
    resolved = resolve_under_roots(path, folders="folders")
    if not resolved.is_file():
        raise FileNotFoundError(f"embedding file {path} does not exist")
    return Source(resolved, _label(resolved), "embeddings")


def _label(path: Path) -> str:
    for root in allowed_roots():
        if path.is_relative_to(root):
            return f"{root.name}/{path.relative_to(root)}"
    return str(path)


_looks_readable: dict[Path, tuple[int, int, bool, str | None]] = {}
MAX_CSV_HEADER = 1 << 20
"""Characters of a CSV's first line a listing reads (its header; 2²⁰ holds 100,000 columns)."""


def _looks_like_embeddings(path: Path) -> tuple[bool, str | None]:
    """A cheap check (names and headers, no arrays read), once per file version: whether the file
    looks like embeddings, and why it could not be read (None when it could)."""
    _, mtime_ns, size = file_version(path)
    known = _looks_readable.get(path)
    if known is not None and known[:2] == (mtime_ns, size):
        return known[2], known[3]
    problem = None
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with zipfile.ZipFile(path) as archive:
                names = {Path(name).stem for name in archive.namelist()}
            looks = {"embeddings", "labels"} <= names
        elif suffix == ".npy":
            looks = not path.stem.endswith(LABELS_SIDECAR) and any(
                path.with_suffix(f"{LABELS_SIDECAR}{ext}").is_file() for ext in (".npy", ".txt")
            )
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            looks = "label" in pq.read_schema(path).names
        else:
            with open(path, encoding="utf-8", errors="replace") as handle:
                header = handle.readline(MAX_CSV_HEADER)  # a listing reads the header alone
            if len(header) == MAX_CSV_HEADER and not header.endswith("\n"):
                raise ValueError(f"no header line within its first {MAX_CSV_HEADER} characters")
            looks = "label" in [column.strip().strip('"') for column in header.split(",")]
    except Exception as error:  # an unreadable file is listed as such instead of breaking the page
        looks, problem = False, f"{type(error).__name__}: {error}"
    _looks_readable[path] = (mtime_ns, size, looks, problem)
    return looks, problem


def discover_embedding_files(*, unreadable: list[str] | None = None) -> list[Source]:
    """Embedding files under the allowed roots (hidden folders and run snapshots skipped); each one
    that cannot be read adds ``"<label>: <why>"`` to ``unreadable`` when a list is given."""
    found: dict[Path, Source] = {}
    problems: dict[Path, str] = {}
    for root in allowed_roots():
        if not root.is_dir():
            continue
        for candidate in root.rglob("*"):
            parts = candidate.relative_to(root).parts
            if candidate.suffix.lower() not in EMBEDDING_SUFFIXES or any(
                part.startswith(".") or part in SKIPPED_FOLDERS for part in parts[:-1]
            ):
                continue
            try:
                source = resolve_source(candidate)
                if not candidate.is_file():
                    continue
                looks, problem = _looks_like_embeddings(source.path)
            except OSError as error:  # a loop is listed; a file gone meanwhile is not
                if error.errno == errno.ELOOP:
                    problems.setdefault(candidate, f"{_label(candidate)}: a symlink loop")
                continue
            except UnsafeCheckpointError:
                continue
            if looks:
                found.setdefault(source.path, source)
            elif problem is not None:
                problems.setdefault(source.path, f"{source.label}: {problem}")
    if unreadable is not None:
        unreadable.extend(sorted(problems.values()))
    return sorted(found.values(), key=lambda source: source.label)


def discover_sources(*, unreadable: list[str] | None = None) -> list[Source]:
    """Checkpoints (:func:`app.checkpoints.discover_checkpoints`) then embedding files; the files
    that cannot be read add ``"<label>: <why>"`` to ``unreadable`` when a list is given."""
    checkpoints = discover_checkpoints(unreadable=unreadable)
    files = discover_embedding_files(unreadable=unreadable)
    return [Source(e.path, e.label, "checkpoint") for e in checkpoints] + files


def _signature(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def checkpoint_signature(config: dict, split: str) -> str:
    """The items a checkpoint's split holds: dataset name, options and data root."""
    digest = _signature(
        config.get("dataset"), config.get("dataset_options"), config.get("data_root")
    )
    return f"{config.get('dataset')} ({split}, {digest})"


def file_signature(record: EmbeddingSet, split: str) -> str:
    """The items an embedding file's split holds: its ids (or row count) and labels."""
    ids = record.ids.tolist() if record.ids is not None else len(record)
    names = [record.class_names[int(label)] for label in record.labels]
    return f"embedding file items ({split}, {_signature(ids, names)})"


def open_split(source: Source, split: str = "test") -> Opened:
    """Embed (checkpoint, cached on disk) or read (file) one split.

    A file without a split column is all ``test``; a file whose splits do not include ``split``
    raises ``ValueError`` naming the splits it has. A checkpoint whose dataset is not on this
    machine raises one of :data:`app.checkpoints.DATASET_ERRORS`.
    """
    if source.kind == "checkpoint":
        if split != "test":
            raise ValueError(f"checkpoints are opened on their test split, not {split!r}")
        config = read_metadata(source.path)["config"]
        return opened_from_evaluation(checkpoint_evaluation(source.path).evaluation, config)
    record = read_embeddings(source.path)
    names = record.split_names()
    chosen = split if split in names or record.split is None else names[0]
    part = record.select_split(chosen)
    return Opened(part, chosen, file_signature(part, chosen), "embeddings")


def opened_from_evaluation(evaluation: StoredEvaluation, config: dict) -> Opened:
    """A checkpoint's stored (or cached) test evaluation as an :class:`Opened` split; ids are the
    dataset indices of its items; its query/gallery masks when it has them."""
    record = make_embedding_set(
        evaluation.embeddings.astype(np.float32),
        evaluation.labels,
        class_names=list(evaluation.class_names),
        ids=evaluation.item_ids,
        split=evaluation.split,
        is_query=evaluation.is_query,
        is_gallery=evaluation.is_gallery,
    )
    return Opened(
        record, evaluation.split, checkpoint_signature(config, evaluation.split), "checkpoint"
    )


def file_splits(source: Source) -> list[str]:
    """The splits an embedding file names (``["test"]`` when it names none)."""
    return read_embeddings(source.path).split_names()


def thumbnail_getter(source: Source, opened: Opened) -> Thumbnail | None:
    """Pictures of the opened items: a checkpoint's dataset thumbnails; a file's images where its
    paths resolve under the allowed roots (None when no path does)."""
    if source.kind == "checkpoint":
        return checkpoint_thumbnail(read_metadata(source.path)["config"], opened)
    record = opened.record
    if record.paths is None:
        return None
    roots = allowed_roots()
    allowed: list[Path | None] = []
    for index in range(len(record)):
        path = record.image_path(index)
        resolved = None if path is None else path.expanduser().resolve()
        inside = resolved is not None and any(resolved.is_relative_to(r) for r in roots)
        allowed.append(resolved if inside and resolved.is_file() else None)
    if not any(allowed):
        return None
    from dml_core.data.base import UNREADABLE_ERRORS, fit_thumbnail, load_rgb

    def thumbnail(index: int, size: int) -> Image.Image | None:
        path = allowed[int(index)]
        if path is None:
            return None
        try:
            return fit_thumbnail(load_rgb(path), size)
        except UNREADABLE_ERRORS:
            return None

    return thumbnail


def checkpoint_thumbnail(config: dict, opened: Opened) -> Thumbnail | None:
    """The dataset's thumbnails of the opened items (ids are dataset indices); None when the
    dataset is not on this machine."""
    try:
        dataset = split_dataset(config, opened.split)
    except DATASET_ERRORS:
        return None
    ids = opened.record.item_ids()
    return lambda index, size: dataset.thumbnail(int(ids[int(index)]), size)


def export_zip(opened: Opened, fmt: str, thumbnail: Thumbnail | None) -> bytes:
    """The files ``dml_core export`` writes for ``fmt`` (tensorboard, parquet, csv), zipped."""
    import io
    import tempfile

    from dml_core.interop import export_embeddings

    with tempfile.TemporaryDirectory(prefix="dml-export-") as folder:
        written = export_embeddings(opened.record, fmt, folder, thumbnail=thumbnail)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in written:
                archive.write(path, arcname=path.name)
    return buffer.getvalue()
