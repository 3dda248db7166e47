"""What Inspect and Compare can open: this project's checkpoints and embedding files made anywhere.

Both must lie under the allowed roots (:func:`app.settings.allowed_roots`), checked on the resolved
path (symlinks followed), exactly as :func:`app.checkpoints.resolve_checkpoint` checks checkpoints.
Embedding files are ``.npz``, ``.npy`` (+ a labels file beside it), ``.parquet`` and ``.csv`` in the
layouts :mod:`dml_core.interop.embeddings_file` reads. Their pictures: :mod:`app.item_images`.

Either kind opens as one :class:`Opened` split, the only thing the pages receive: the items, and
what a checkpoint stores beside them (metrics, PCA/UMAP, its header with history and config). Every
opened split carries a ``signature`` naming the items it holds (:func:`items_signature`, the same
for both kinds); per-item comparisons need equal signatures (:func:`per_item_problem`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app import analysis
from app.cache import file_version
from app.checkpoints import (
    DATASET_ERRORS,
    UnsafeCheckpointError,
    checkpoint_evaluation,
    discover_checkpoints,
    resolve_checkpoint,
    resolve_under_roots,
)
from app.settings import allowed_roots
from dml_core.engine.checkpoint_header import read_metadata
from dml_core.engine.stored_section import StoredEvaluation
from dml_core.interop import EmbeddingSet, make_embedding_set, read_embeddings
from dml_core.interop.numpy_files import npz_problem
from dml_core.metrics.retrieval import DEFAULT_RECALL_KS

EMBEDDING_SUFFIXES = (".npz", ".npy", ".parquet", ".csv")
SKIPPED_FOLDERS = frozenset({"snapshots"})
"""Folders of npz files that are not embedding files for Inspect (a run's per-epoch snapshots)."""
LABELS_SIDECAR = ".labels"


@dataclass(frozen=True)
class Source:
    """Something the pages can open: ``kind`` is ``"checkpoint"`` or ``"embeddings"``."""

    path: Path
    label: str
    kind: str


@dataclass(frozen=True)
class Opened:
    """One split of a source, as Inspect and Compare use it: the items (``record``) and, for a
    checkpoint, what it stores beside them. Picklable, so Streamlit can cache it."""

    record: EmbeddingSet
    split: str
    signature: str
    source: Source
    metrics: dict[str, float] | None = None
    """The stored (or once computed and cached) metrics, keys ``<split>/<metric>``; None for a file
    (the pages score it, :func:`app.panels.common.analysed`)."""
    pca: np.ndarray | None = None
    umap: np.ndarray | None = None
    """The stored projections (N×2), None where the source has none."""
    metadata: dict[str, Any] | None = None
    """A checkpoint's header (config, history, best, epoch); None for a file."""
    origin: str = "file"
    """``file``; for a checkpoint ``stored`` (its own section), ``cache`` or ``computed`` here."""
    note: str | None = None
    """Why a checkpoint's evaluation was not read from it (None when it was)."""

    @property
    def kind(self) -> str:
        return self.source.kind

    @property
    def label(self) -> str:
        return self.source.label

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
    def protocol(self) -> str:
        return "leave-one-out" if self.is_query is None else "queries against the gallery"

    @property
    def class_names(self) -> list[str]:
        """The class names as displayed (:func:`app.analysis.display_names`)."""
        return analysis.display_names(self.record.class_names)

    @property
    def config(self) -> dict[str, Any] | None:
        return None if self.metadata is None else self.metadata.get("config")

    @property
    def history(self) -> list[dict[str, float]]:
        """The per-evaluation metric history a checkpoint carries (empty for a file)."""
        return list((self.metadata or {}).get("history") or [])

    @property
    def run_dir(self) -> Path | None:
        """The folder a checkpoint lies in (its run's, with snapshots if it wrote any)."""
        return self.source.path.parent if self.kind == "checkpoint" else None

    @property
    def ks(self) -> tuple[int, ...]:
        """Recall@k's k: the checkpoint's ``eval_ks``, else the library's default."""
        return tuple((self.config or {}).get("eval_ks") or DEFAULT_RECALL_KS)


class NotEvaluated(Exception):
    """A checkpoint without a stored evaluation whose dataset is not on this machine: only its
    header (``metadata``: config, history) can be shown."""

    def __init__(self, source: Source, metadata: dict[str, Any], reason: str) -> None:
        super().__init__(reason)
        self.source, self.metadata = source, metadata


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
            problem = npz_problem(path) if looks else None  # headers and labels, no embeddings
            looks = looks and problem is None
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


def items_signature(record: EmbeddingSet) -> str:
    """The items a split holds, the same way for both kinds: a hash of their ids (a checkpoint's
    dataset indices, a file's ids or row numbers) and each item's class name."""
    names = [record.class_names[int(label)] for label in record.labels]
    parts = json.dumps([record.item_ids().tolist(), names], default=str).encode()
    return f"{len(record)} items ({hashlib.sha256(parts).hexdigest()[:12]})"


def per_item_problem(opened: Sequence[Opened]) -> str | None:
    """None when every split holds the same items in the same order (equal signatures and
    labels), else why per-item comparisons are off: the one test of "same items"."""
    return analysis.per_item_problem(
        [o.signature for o in opened], [o.labels for o in opened], [o.label for o in opened]
    )


def source_splits(source: Source) -> list[str]:
    """The splits a source can open: a checkpoint's ``test``; the splits a file names
    (``["test"]`` when it names none)."""
    if source.kind == "checkpoint":
        return ["test"]
    return read_embeddings(source.path).split_names()


def open_split(source: Source, split: str = "test") -> Opened:
    """A checkpoint's stored test evaluation (else the cached or once computed one) with its
    header, or one split of an embedding file.

    A file without a split column is all ``test``; a file whose splits do not include ``split``
    raises ``ValueError`` naming the splits it has. A checkpoint without a stored evaluation whose
    dataset is not on this machine raises :class:`NotEvaluated`.
    """
    if source.kind == "checkpoint":
        if split != "test":
            raise ValueError(f"checkpoints are opened on their test split, not {split!r}")
        metadata = read_metadata(source.path)
        try:
            view = checkpoint_evaluation(source.path)
        except DATASET_ERRORS as error:
            raise NotEvaluated(source, metadata, str(error)) from error
        return opened_from_evaluation(
            view.evaluation, metadata["config"], source, metadata, view.source, view.note
        )
    record = read_embeddings(source.path)
    names = record.split_names()
    chosen = split if split in names or record.split is None else names[0]
    part = record.select_split(chosen)
    return Opened(part, chosen, items_signature(part), source)


def opened_from_evaluation(
    evaluation: StoredEvaluation,
    config: dict[str, Any],
    source: Source | None = None,
    metadata: dict[str, Any] | None = None,
    origin: str = "stored",
    note: str | None = None,
) -> Opened:
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
        record,
        evaluation.split,
        items_signature(record),
        source or Source(Path(), "checkpoint", "checkpoint"),
        metrics=dict(evaluation.metrics),
        pca=evaluation.pca,
        umap=evaluation.umap,
        metadata=metadata if metadata is not None else {"config": config},
        origin=origin,
        note=note,
    )


def export_zip(opened: Opened, fmt: str, thumbnail: Callable[[int, int], Any] | None) -> bytes:
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
