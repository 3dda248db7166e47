"""Embedding a split and scoring it: shared by the trainer, ``python -m dml_core evaluate`` and the app.

Test split → retrieval metrics (Recall@k, MAP@R, …) and embedding-space metrics; the ``eval_train``
split (train classes, test-time transforms) → ρ@k and π metrics, as the paper computes them
(docs/DESIGN.md §3), and Recall@k alone (no MAP@R or clustering), so fitting can be read next to
test Recall@k.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from dml_core.config import TrainConfig
from dml_core.data.base import whole_split
from dml_core.data.splits import build_split
from dml_core.engine.checkpoint import load_checkpoint
from dml_core.engine.projection import pca_2d
from dml_core.io import atomic_save_npz
from dml_core.metrics import embedding_space_metrics, leave_one_out_neighbors, retrieval_metrics

SNAPSHOT_MAX_POINTS = 5000
SNAPSHOT_AUTO_LIMIT = 20_000


def resolve_device(device: str) -> torch.device:
    """``auto`` → the local CUDA device when present (LOCAL_RANK under torchrun), else CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(
            f"--device {device!r} is not a device; expected auto, cpu, cuda, cuda:N or mps"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is available here; use cpu or auto")
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {device!r}: expected auto, cpu, cuda, cuda:N or mps")
    return resolved


def autocast_context(device: torch.device, amp: str) -> Any:
    """bf16 autocast on CUDA under ``amp="auto"``; explicit ``bf16``/``fp16`` anywhere; else none."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    if amp == "auto":
        dtype = torch.bfloat16 if device.type == "cuda" else None
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def in_memory_inputs(dataset: Any) -> torch.Tensor | None:
    """All inputs as one tensor for datasets that give their whole split at once
    (``whole_split``), else None."""
    whole = whole_split(dataset)
    return None if whole is None else whole[0]


def _memory_format(model: torch.nn.Module) -> torch.memory_format:
    """channels_last when the model's first 4-D weight is stored that way, else contiguous."""
    for parameter in model.parameters():
        if parameter.dim() == 4:
            if parameter.is_contiguous(memory_format=torch.channels_last):
                return torch.channels_last
            break
    return torch.contiguous_format


@torch.inference_mode()
def compute_embeddings(
    model: torch.nn.Module,
    dataset: Any,
    *,
    device: torch.device,
    batch_size: int = 256,
    num_workers: int = 0,
    amp: str = "auto",
    return_indices: bool = False,
) -> tuple[torch.Tensor, np.ndarray] | tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Embeddings (float32, on ``device``) of every readable item in dataset order, their labels
    and, with ``return_indices``, their dataset indices. An item whose file proves unreadable comes
    back as another item; it is dropped (one ``CorruptImageWarning`` with the count), never scored
    under its own label (``dml_core.data.base.readable_positions``)."""
    from dml_core.data.base import readable_positions

    was_training = model.training
    model.eval()
    returned: list[torch.Tensor] = []
    try:
        inputs = in_memory_inputs(dataset)
        if inputs is not None:
            positions = torch.arange(len(inputs))
            batches = [
                (inputs[i : i + batch_size], positions[i : i + batch_size])
                for i in range(0, len(inputs), batch_size)
            ]
        else:
            loader = DataLoader(
                dataset,
                batch_size=batch_size,
                shuffle=False,
                num_workers=num_workers,
                pin_memory=device.type == "cuda",
            )
            batches = ((batch[0], batch[2]) for batch in loader)
        memory_format = _memory_format(model)
        chunks = []
        for batch, indices in batches:
            returned.append(indices)
            batch = batch.to(device, non_blocking=True)
            if batch.dim() == 4:
                batch = batch.contiguous(memory_format=memory_format)
            with autocast_context(device, amp):
                chunks.append(model(batch).float())
        embeddings = torch.cat(chunks) if chunks else torch.empty(0, 0, device=device)
    finally:
        model.train(was_training)
    kept = readable_positions(dataset, torch.cat(returned).numpy() if returned else np.arange(0))
    if len(kept) < len(embeddings):
        embeddings = embeddings[torch.as_tensor(kept, device=embeddings.device)]
    labels = np.asarray(dataset.labels)[kept]
    return (embeddings, labels, kept) if return_indices else (embeddings, labels)


def query_gallery(dataset: Any, rows: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(is_query, is_gallery)`` of the items at ``rows`` (dataset indices, as
    ``compute_embeddings`` returns them) from ``dataset.query_gallery()`` (the ``csv`` dataset's
    test split); ``(None, None)`` when the dataset has none: every item is both, leave-one-out."""
    method = getattr(dataset, "query_gallery", None)
    masks = method() if callable(method) else None
    if masks is None:
        return None, None
    rows = np.asarray(rows, dtype=np.int64)
    is_query, is_gallery = masks
    return np.asarray(is_query, dtype=bool)[rows], np.asarray(is_gallery, dtype=bool)[rows]


def recall_at_ks(
    embeddings: torch.Tensor,
    labels: np.ndarray,
    ks: list[int],
    *,
    approximate: str | None = None,
) -> dict[str, float]:
    """``recall@k`` for each k < N: leave-one-out, over the queries whose class has another item,
    as ``retrieval_metrics`` computes it but without MAP@R or clustering (cheap on a train split)."""
    labels = np.asarray(labels)
    _, class_index, class_sizes = np.unique(labels, return_inverse=True, return_counts=True)
    evaluated = class_sizes[class_index] > 1
    usable = sorted(k for k in set(ks) if 1 <= k < len(labels))
    if not usable or not evaluated.any():
        return {}
    neighbors, _ = leave_one_out_neighbors(embeddings, usable[-1], approximate=approximate)
    hits = (neighbors >= 0) & (class_index[np.maximum(neighbors, 0)] == class_index[:, None])
    first_hit = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, usable[-1] + 1)
    return {f"recall@{k}": float((first_hit[evaluated] <= k).mean()) for k in usable}


def split_metrics(
    split: str,
    embeddings: torch.Tensor,
    labels: np.ndarray,
    ks: list[int],
    *,
    rho_spectrum: str = "full",
    is_query: np.ndarray | None = None,
    is_gallery: np.ndarray | None = None,
    approximate: str | None = None,
) -> dict[str, float]:
    """``{"<split>/<metric>": value}``: all retrieval metrics, except only Recall@k on the train
    split (``recall_at_ks``); embedding-space metrics always (ρ@k on ``rho_spectrum``).
    ``is_query``/``is_gallery`` (``query_gallery``; None: every item is both): the
    query/gallery protocol of the retrieval metrics. ``approximate`` ("hnsw", "ivf"; None: exact):
    the approximate kNN index and sampled k-means of ``dml_core.metrics`` (docs/DESIGN.md §3)."""
    metrics: dict[str, float] = {}
    labels = np.asarray(labels)
    if split == "train":
        metrics.update(recall_at_ks(embeddings, labels, ks, approximate=approximate))
    else:
        protocol = {"is_query": is_query, "is_gallery": is_gallery}
        metrics.update(
            retrieval_metrics(embeddings, labels, ks=tuple(ks), approximate=approximate, **protocol)
        )
    metrics.update(embedding_space_metrics(embeddings, labels, rho_spectrum=rho_spectrum))
    return {f"{split}/{k}": float(v) for k, v in metrics.items()}


def subsample_indices(
    num_items: int, max_points: int = SNAPSHOT_MAX_POINTS, seed: int = 0
) -> np.ndarray:
    """At most ``max_points`` sorted indices, the same for every call with the same arguments."""
    if num_items <= max_points:
        return np.arange(num_items)
    return np.sort(np.random.default_rng(seed).choice(num_items, size=max_points, replace=False))


def write_snapshot(
    path: Path,
    embeddings: torch.Tensor,
    labels: np.ndarray,
    indices: np.ndarray,
    epoch: int,
    *,
    rows: np.ndarray | None = None,
) -> None:
    """An ``.npz`` of the test embeddings at ``indices`` (``subsample_indices``). ``rows``: the
    dataset index of each row of ``embeddings`` when ``compute_embeddings`` dropped unreadable
    items (default: row i is item i); indices without a row are left out. Arrays
    ``embeddings`` (n, d) float32, ``labels`` (n,), ``indices`` (n,) into the test split, ``epoch``,
    and ``pca`` (n, 2), their first two principal components (``projection.pca_2d``)."""
    rows = np.arange(len(embeddings)) if rows is None else np.asarray(rows)
    position = np.minimum(np.searchsorted(rows, indices), max(len(rows) - 1, 0))
    present = rows[position] == indices if len(rows) else np.zeros(len(indices), dtype=bool)
    indices, position = np.asarray(indices)[present], position[present]
    selected = embeddings[torch.as_tensor(position, device=embeddings.device)].cpu().numpy()
    atomic_save_npz(
        path,
        embeddings=selected,
        pca=pca_2d(selected),
        labels=labels[position],
        indices=indices,
        epoch=np.array(epoch),
    )


@dataclass(frozen=True)
class CheckpointEmbeddings:
    """One split of a checkpoint's dataset embedded, with the dataset and the run's config."""

    embeddings: torch.Tensor
    """float32 (N, d) on the device the checkpoint was embedded on."""
    labels: np.ndarray
    indices: np.ndarray
    """Dataset index of each row (unreadable items are dropped, see ``compute_embeddings``)."""
    dataset: Any
    config: TrainConfig
    is_query: np.ndarray | None = None
    """Per row: a query (``query_gallery``); None with ``is_gallery``: every item is both."""
    is_gallery: np.ndarray | None = None


def embed_checkpoint(
    path: str | Path,
    split: str,
    *,
    data_root: str | None = None,
    device: str | torch.device = "auto",
    batch_size: int | None = None,
    amp: str | None = None,
) -> CheckpointEmbeddings:
    """Checkpoint → its TrainConfig → ``split`` of its dataset → model → embeddings.

    ``data_root`` overrides the dataset root stored in the checkpoint; ``batch_size`` and ``amp``
    default to the run's (``eval_batch_size``, ``amp``).
    """
    torch_device = resolve_device(device) if isinstance(device, str) else device
    model, metadata = load_checkpoint(path, device=torch_device)
    config = TrainConfig.from_dict(metadata["config"])
    dataset = build_split(config, split, data_root)
    embeddings, labels, indices = compute_embeddings(
        model,
        dataset,
        device=torch_device,
        batch_size=config.eval_batch_size if batch_size is None else batch_size,
        amp=config.amp if amp is None else amp,
        return_indices=True,
    )
    indices = np.asarray(indices)
    is_query, is_gallery = query_gallery(dataset, indices)
    return CheckpointEmbeddings(
        embeddings, labels, indices, dataset, config, is_query=is_query, is_gallery=is_gallery
    )


def evaluate_checkpoint(
    path: str | Path,
    *,
    data_root: str | None = None,
    device: str = "auto",
    splits: tuple[str, ...] = ("test", "eval_train"),
    batch_size: int = 256,
    approximate: str | None = None,
) -> dict[str, float]:
    """Every metric of a checkpoint on ``splits`` (keys ``test/…``, ``train/…``); ``approximate``
    as in ``split_metrics``."""
    metrics: dict[str, float] = {}
    for split in splits:
        embedded = embed_checkpoint(
            path, split, data_root=data_root, device=device, batch_size=batch_size
        )
        name = "train" if split == "eval_train" else split
        config = embedded.config
        metrics.update(
            split_metrics(
                name,
                embedded.embeddings,
                embedded.labels,
                config.eval_ks,
                rho_spectrum=config.rho_spectrum,
                is_query=embedded.is_query,
                is_gallery=embedded.is_gallery,
                approximate=approximate,
            )
        )
    return metrics
