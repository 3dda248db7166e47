"""The evaluation a checkpoint carries (docs/DESIGN.md §6): its test split embedded and projected.

Stored inside the ``.safetensors`` file itself, beside the weights, so it travels with it: tensors
``evaluation.embeddings`` (N×d float16), ``evaluation.labels`` and ``evaluation.item_ids`` (N int64,
the dataset index of each row), ``evaluation.pca`` and, when computed, ``evaluation.umap`` (N×2
float32), under the query/gallery protocol (the ``csv`` dataset) ``evaluation.is_query`` and
``evaluation.is_gallery`` (N uint8, 0/1; absent: every item is both); the header key
``dml_explorer_evaluation`` holds one JSON document: ``section_version``, ``split``, ``epoch``,
``class_names`` (indexed by label), ``metrics`` (``test/…``, scored under those masks),
``rho_spectrum`` (the spectrum ρ@k was computed on: the run's ``rho_spectrum``, so the section, the
run's history and ``evaluate`` give one number) and ``umap`` (the settings of the stored UMAP, or
null). The weights and the checkpoint's own header are left as they were. A checkpoint without the
section opens as before; one whose section does not read back consistently, or holds ρ@k on another
spectrum than its config names (sections written before ``rho_spectrum`` was recorded hold "full"),
raises :class:`StoredEvaluationError`, and readers compute the evaluation instead.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dml_core.engine.checkpoint import read_metadata
from dml_core.engine.evaluation import CheckpointEmbeddings, embed_checkpoint, split_metrics
from dml_core.engine.fingerprint import (
    EVALUATION_PREFIX,
    Fingerprint,
    checkpoint_fingerprint,
    stat_key,
    weights_digest,
)
from dml_core.engine.header_schema import evaluation_problem
from dml_core.engine.projection import INTERACTIVE, UmapSettings, pca_2d, umap_2d
from dml_core.io import atomic_write, clean_stale_temp_files, fault_point, write_safetensors
from dml_core.metrics.retrieval import DEFAULT_RECALL_KS

SECTION_KEY = "dml_explorer_evaluation"
SECTION_VERSION = 1
PREFIX = EVALUATION_PREFIX
MIN_UMAP_ITEMS = 10
"""Below this many items the section holds PCA only."""


class StoredEvaluationError(ValueError):
    """A checkpoint's evaluation section that does not read back consistently."""


class CheckpointChangedError(StoredEvaluationError):
    """The checkpoint was rewritten while its evaluation was computed: storing it would put one
    file's evaluation beside another's weights."""


@dataclass(frozen=True)
class StoredEvaluation:
    """One split of a checkpoint, embedded, scored and projected."""

    split: str
    embeddings: np.ndarray
    """(N, d) float16 as stored (``astype(np.float32)`` before arithmetic)."""
    labels: np.ndarray
    item_ids: np.ndarray
    class_names: list[str]
    metrics: dict[str, float]
    pca: np.ndarray
    umap: np.ndarray | None = None
    umap_settings: dict[str, Any] | None = None
    epoch: int | None = None
    is_query: np.ndarray | None = None
    """Per item: a query (bool); None with ``is_gallery``: every item is both (leave-one-out)."""
    is_gallery: np.ndarray | None = None
    rho_spectrum: str = "full"
    """The singular values ρ@k was computed on ("full" or "official", ``embedding_space_metrics``)."""

    def __len__(self) -> int:
        return len(self.labels)


def build_evaluation(
    embeddings: np.ndarray | torch.Tensor,
    labels: np.ndarray,
    item_ids: np.ndarray,
    class_names: list[str],
    *,
    ks: list[int] | tuple[int, ...] = DEFAULT_RECALL_KS,
    split: str = "test",
    epoch: int | None = None,
    umap: UmapSettings | None = INTERACTIVE,
    is_query: np.ndarray | None = None,
    is_gallery: np.ndarray | None = None,
    rho_spectrum: str = "full",
) -> StoredEvaluation:
    """Score (``split_metrics``, ρ@k on ``rho_spectrum``, under the ``is_query``/``is_gallery``
    masks when given: the query/gallery protocol), project (PCA; UMAP with ``umap`` unless None)
    and pack."""
    points = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    labels = np.asarray(labels, dtype=np.int64)
    masks = [None if m is None else np.asarray(m, dtype=bool) for m in (is_query, is_gallery)]
    if any(
        m is not None for m in masks
    ):  # both stored, a missing one all True (as retrieval_metrics)
        masks = [np.ones(len(labels), bool) if m is None else m for m in masks]
    protocol = {"is_query": masks[0], "is_gallery": masks[1]}
    searched = len(labels) if masks[1] is None else int(masks[1].sum())
    valid_ks = [k for k in ks if k < searched]
    scored = len(labels) > 1 and searched > 0
    metrics = (
        split_metrics(split, points, labels, valid_ks, rho_spectrum=rho_spectrum, **protocol)
        if scored
        else {}
    )
    array = points.numpy()
    umap_layout = None
    if umap is not None and len(labels) >= MIN_UMAP_ITEMS:
        umap_layout = umap_2d(array, umap)
    return StoredEvaluation(
        split=split,
        embeddings=array.astype(np.float16),
        labels=labels,
        item_ids=np.asarray(item_ids, dtype=np.int64),
        class_names=[str(name) for name in class_names],
        metrics={k: float(v) for k, v in metrics.items()},
        pca=pca_2d(array),
        umap=umap_layout,
        umap_settings=umap.to_dict() if umap_layout is not None and umap else None,
        epoch=epoch,
        is_query=masks[0],
        is_gallery=masks[1],
        rho_spectrum=rho_spectrum,
    )


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def write_evaluation(
    path: str | Path, evaluation: StoredEvaluation, expected: Fingerprint | None = None
) -> Path:
    """Put ``evaluation`` into the checkpoint at ``path`` (replacing an earlier section),
    atomically; the weights and the ``dml_explorer`` header stay as they were. With ``expected``
    (the fingerprint taken before the evaluation was computed), the file must still be that file,
    with those weights, when it is read here and just before the replace: else
    :class:`CheckpointChangedError` and nothing is written."""
    from safetensors import safe_open

    path = Path(path)
    read_metadata(path)

    def unchanged() -> None:
        if expected is not None and stat_key(path) != expected[:3]:
            raise CheckpointChangedError(
                f"{path} was rewritten while its evaluation was computed; nothing was stored "
                "(run project again once the file stays put)"
            )

    unchanged()
    with safe_open(str(path), framework="pt") as handle:
        header = dict(handle.metadata() or {})
        tensors = {
            name: handle.get_tensor(name)
            for name in handle.keys()  # noqa: SIM118 (safe_open is not a mapping)
            if not name.startswith(PREFIX)
        }
    unchanged()
    if expected is not None and weights_digest(tensors) != expected[3]:
        raise CheckpointChangedError(f"{path}: its weights changed while it was evaluated")
    tensors[PREFIX + "embeddings"] = torch.from_numpy(
        np.ascontiguousarray(evaluation.embeddings, dtype=np.float16)
    )
    tensors[PREFIX + "labels"] = torch.from_numpy(np.ascontiguousarray(evaluation.labels))
    tensors[PREFIX + "item_ids"] = torch.from_numpy(np.ascontiguousarray(evaluation.item_ids))
    tensors[PREFIX + "pca"] = torch.from_numpy(np.ascontiguousarray(evaluation.pca, np.float32))
    for name in ("is_query", "is_gallery"):
        mask = getattr(evaluation, name)
        if mask is not None:
            tensors[PREFIX + name] = torch.from_numpy(np.asarray(mask, dtype=np.uint8).copy())
    if evaluation.umap is not None:
        tensors[PREFIX + "umap"] = torch.from_numpy(
            np.ascontiguousarray(evaluation.umap, np.float32)
        )
    header[SECTION_KEY] = json.dumps(
        {
            "section_version": SECTION_VERSION,
            "split": evaluation.split,
            "epoch": evaluation.epoch,
            "class_names": list(evaluation.class_names),
            "metrics": {k: _finite_or_none(v) for k, v in evaluation.metrics.items()},
            "rho_spectrum": evaluation.rho_spectrum,
            "umap": evaluation.umap_settings if evaluation.umap is not None else None,
        },
        sort_keys=True,
    )
    save = lambda tmp: write_safetensors(tmp, tensors, header)  # noqa: E731
    return atomic_write(path, save, before_replace=unchanged)


def has_evaluation(path: str | Path) -> bool:
    """Whether the checkpoint's header names an evaluation section (nothing else is read)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as handle:
        return SECTION_KEY in (handle.metadata() or {})


def read_evaluation(path: str | Path) -> StoredEvaluation | None:
    """The checkpoint's stored evaluation, None when it has none; :class:`StoredEvaluationError`
    (one line naming the file) when the section is there but inconsistent."""
    from safetensors import safe_open

    path = Path(path)
    configured = (read_metadata(path).get("config") or {}).get("rho_spectrum", "full")

    def broken(reason: str) -> StoredEvaluationError:
        return StoredEvaluationError(f"{path}: the stored evaluation section {reason}")

    try:
        with safe_open(str(path), framework="np") as handle:
            raw = (handle.metadata() or {}).get(SECTION_KEY)
            if raw is None:
                return None
            names = set(handle.keys())
            arrays = {
                name[len(PREFIX) :]: handle.get_tensor(name)
                for name in names
                if name.startswith(PREFIX)
            }
    except (OSError, RuntimeError, ValueError) as error:
        raise broken(f"cannot be read ({error})") from None
    try:
        document = json.loads(raw)
    except json.JSONDecodeError:
        raise broken("has an unreadable header document") from None
    if not isinstance(document, dict) or document.get("section_version") != SECTION_VERSION:
        version = document.get("section_version") if isinstance(document, dict) else None
        raise broken(f"has version {version!r}; this code reads {SECTION_VERSION}")
    problem = evaluation_problem(document, arrays)  # the one schema (header_schema)
    if problem is not None:
        raise broken(problem)
    embeddings, labels = arrays["embeddings"], arrays["labels"]
    class_names = document["class_names"]
    spectrum = document.get("rho_spectrum", "full")  # what sections without the key computed
    if spectrum != configured:
        raise broken(
            f"holds ρ@k on the {spectrum!r} spectrum, the run's config says {configured!r} "
            "(store it again: python -m dml_core project <checkpoint>)"
        )
    metrics = {
        str(k): float("nan") if v is None else float(v)
        for k, v in (document.get("metrics") or {}).items()
    }
    return StoredEvaluation(
        split=str(document.get("split", "test")),
        embeddings=embeddings,
        labels=labels.astype(np.int64),
        item_ids=arrays["item_ids"].astype(np.int64),
        class_names=[str(name) for name in class_names],
        metrics=metrics,
        pca=arrays["pca"].astype(np.float32),
        umap=arrays["umap"].astype(np.float32) if "umap" in arrays else None,
        umap_settings=document.get("umap") if "umap" in arrays else None,
        epoch=document.get("epoch"),
        is_query=arrays["is_query"].astype(bool) if "is_query" in arrays else None,
        is_gallery=arrays["is_gallery"].astype(bool) if "is_gallery" in arrays else None,
        rho_spectrum=spectrum,
    )


def evaluation_of(
    path: str | Path,
    embedded: CheckpointEmbeddings,
    split: str = "test",
    umap: UmapSettings | None = INTERACTIVE,
) -> StoredEvaluation:
    """Score and project ``split`` of the checkpoint at ``path`` as ``embed_checkpoint`` returned it."""
    return build_evaluation(
        embedded.embeddings.cpu().numpy(),
        embedded.labels,
        embedded.indices,
        list(embedded.dataset.class_names),
        ks=list(embedded.config.eval_ks),
        split=split,
        epoch=read_metadata(path).get("epoch"),
        umap=umap,
        is_query=embedded.is_query,
        is_gallery=embedded.is_gallery,
        rho_spectrum=embedded.config.rho_spectrum,
    )


def store_embedded(
    path: str | Path,
    embedded: CheckpointEmbeddings,
    split: str = "test",
    umap: UmapSettings | None = INTERACTIVE,
) -> StoredEvaluation:
    """``evaluation_of`` written into the checkpoint at ``path``; returns what was stored."""
    evaluation = evaluation_of(path, embedded, split, umap)
    write_evaluation(path, evaluation)
    return evaluation


def open_evaluation(
    path: str | Path, *, data_root: str | None = None, device: str | torch.device = "cpu"
) -> tuple[StoredEvaluation, str | None]:
    """The stored test-split evaluation, or, when it is absent or unreadable, one computed now
    (embeddings, metrics and PCA; no UMAP; nothing is written). The note says why it was computed
    (None when it was read)."""
    try:
        stored = read_evaluation(path)
        note = f"{path} has no stored evaluation; computed it from the dataset"
    except StoredEvaluationError as error:
        stored, note = None, f"{error}; computed it from the dataset"
    if stored is not None:
        return stored, None
    embedded = embed_checkpoint(path, "test", data_root=data_root, device=device)
    return evaluation_of(path, embedded, "test", umap=None), note


def evaluate_and_store(
    path: str | Path,
    *,
    split: str = "test",
    data_root: str | None = None,
    device: str | torch.device = "auto",
    umap: UmapSettings | None = INTERACTIVE,
) -> StoredEvaluation:
    """Embed ``split`` of the checkpoint's dataset (``embed_checkpoint``), score, project, and
    write the section into the checkpoint; returns what was stored. A file rewritten meanwhile
    (another fingerprint at the commit, ``write_evaluation``) is evaluated once more, then refused
    with :class:`CheckpointChangedError`."""
    path = Path(path)
    read_metadata(path)  # a file that is no checkpoint: one line naming it, before any tensor
    clean_stale_temp_files(path)  # what a killed project of this file left beside it
    for attempt in (1, 2):
        before = checkpoint_fingerprint(path)
        embedded = embed_checkpoint(path, split, data_root=data_root, device=device)
        fault_point("embedded", path.name)
        evaluation = evaluation_of(path, embedded, split, umap)
        try:
            write_evaluation(path, evaluation, expected=before)
            return evaluation
        except CheckpointChangedError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def store_run_evaluations(
    run_dir: str | Path,
    device: str | torch.device = "auto",
    embedded: Mapping[str, CheckpointEmbeddings] | None = None,
) -> list[Path]:
    """At the end of training: the section in ``best`` and ``last`` of a run folder. ``embedded``
    holds the test embeddings the trainer already computed for a kind with exactly the saved
    weights (its evaluation at that step); other kinds are embedded again from their file. A
    failure here never fails the run (the app computes a missing section): it is one warning."""
    written = []
    for kind in ("best", "last"):
        path = Path(run_dir) / f"{kind}.safetensors"
        if not path.is_file():
            continue
        try:
            if embedded and kind in embedded:
                store_embedded(path, embedded[kind])
            else:
                evaluate_and_store(path, device=device)
            written.append(path)
        except Exception as error:  # the run is finished and its weights are safe
            warnings.warn(f"{path}: the evaluation section was not stored ({error})", stacklevel=2)
    return written
