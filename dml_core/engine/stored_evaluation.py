"""Computing and storing the evaluation a checkpoint carries (docs/DESIGN.md §6): its test split
embedded, scored and projected, written into the ``.safetensors`` file beside the weights. The
section's format and its reader (no torch) live in :mod:`dml_core.engine.stored_section`.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from dml_core.engine.checkpoint_header import read_metadata
from dml_core.engine.evaluation import CheckpointEmbeddings, embed_checkpoint, split_metrics
from dml_core.engine.fingerprint import (
    Fingerprint,
    checkpoint_fingerprint,
    stat_key,
    weights_digest,
)
from dml_core.engine.projection import INTERACTIVE, UmapSettings, pca_2d, umap_2d
from dml_core.engine.stored_section import (
    PREFIX,
    SECTION_KEY,
    SECTION_VERSION,
    StoredEvaluation,
    StoredEvaluationError,
    read_evaluation,
)
from dml_core.io import atomic_write, clean_stale_temp_files, fault_point, write_safetensors
from dml_core.metrics.retrieval import DEFAULT_RECALL_KS

MIN_UMAP_ITEMS = 10
"""Below this many items the section holds PCA only."""


class CheckpointChangedError(StoredEvaluationError):
    """The checkpoint was rewritten while its evaluation was computed: storing it would put one
    file's evaluation beside another's weights."""


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
