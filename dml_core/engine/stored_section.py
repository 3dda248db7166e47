"""The evaluation a checkpoint carries (docs/DESIGN.md §6), read without torch.

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

This module reads the section (numpy only: a page that shows it loads no torch);
:mod:`dml_core.engine.stored_evaluation` computes and writes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dml_core.engine.checkpoint_header import read_metadata
from dml_core.engine.fingerprint import EVALUATION_PREFIX
from dml_core.engine.header_schema import evaluation_problem

SECTION_KEY = "dml_explorer_evaluation"
SECTION_VERSION = 1
PREFIX = EVALUATION_PREFIX


class StoredEvaluationError(ValueError):
    """A checkpoint's evaluation section that does not read back consistently."""


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
