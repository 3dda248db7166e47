"""Embedding a split and scoring it: shared by the trainer, ``python -m dml_core evaluate`` and the app.

Test split → retrieval metrics (Recall@k, MAP@R, …) and embedding-space metrics; the ``eval_train``
split (train classes, test-time transforms) → ρ@k and π metrics, as the paper computes them (DESIGN.md §3).
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from dml_core.config import TrainConfig
from dml_core.data import build_dataset
from dml_core.data.subset import ClassSubset, split_validation_classes
from dml_core.metrics import embedding_space_metrics, retrieval_metrics

SNAPSHOT_MAX_POINTS = 5000
SNAPSHOT_AUTO_LIMIT = 20_000


def resolve_device(device: str) -> torch.device:
    """``auto`` → the local CUDA device when present (LOCAL_RANK under torchrun), else CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    return torch.device(device)


def autocast_context(device: torch.device, amp: str) -> Any:
    """bf16 autocast on CUDA under ``amp="auto"``; explicit ``bf16``/``fp16`` anywhere; else none."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    if amp == "auto":
        dtype = torch.bfloat16 if device.type == "cuda" else None
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def build_split(config: TrainConfig, split: str, data_root: str | None = None) -> Any:
    """The dataset of ``split`` in {"train", "test", "eval_train", "val"} as ``config`` describes it.

    With ``config.val_classes > 0`` the last fraction of the train classes forms ``val`` (test-time
    transforms) and is removed from ``train`` and ``eval_train``.
    """
    options = dict(config.dataset_options)
    if config.image_size is not None:
        options["image_size"] = config.image_size
    root = data_root if data_root is not None else config.data_root
    base_split = {"val": "eval_train"}.get(split, split)
    dataset = build_dataset(config.dataset, root=root, split=base_split, **options)
    if config.val_classes > 0 and split != "test":
        train_classes, val_classes = split_validation_classes(
            dataset.num_classes, config.val_classes
        )
        dataset = ClassSubset(dataset, val_classes if split == "val" else train_classes)
    elif split == "val":
        raise ValueError("there is no validation split: the run was configured with val_classes=0")
    return dataset


def in_memory_inputs(dataset: Any) -> torch.Tensor | None:
    """All inputs as one tensor for datasets that hold them (the toy), else None."""
    tensors = getattr(dataset, "tensors", None)
    return tensors()[0] if callable(tensors) else None


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
) -> tuple[torch.Tensor, np.ndarray]:
    """Embeddings (float32, on ``device``) of every item in dataset order, and the labels."""
    was_training = model.training
    model.eval()
    try:
        inputs = in_memory_inputs(dataset)
        if inputs is not None:
            batches = [inputs[i : i + batch_size] for i in range(0, len(inputs), batch_size)]
        else:
            loader = DataLoader(
                dataset,
                batch_size=batch_size,
                shuffle=False,
                num_workers=num_workers,
                pin_memory=device.type == "cuda",
            )
            batches = (batch[0] for batch in loader)
        memory_format = _memory_format(model)
        chunks = []
        for batch in batches:
            batch = batch.to(device, non_blocking=True)
            if batch.dim() == 4:
                batch = batch.contiguous(memory_format=memory_format)
            with autocast_context(device, amp):
                chunks.append(model(batch).float())
        embeddings = torch.cat(chunks) if chunks else torch.empty(0, 0, device=device)
    finally:
        model.train(was_training)
    return embeddings, np.asarray(dataset.labels)


def split_metrics(
    split: str, embeddings: torch.Tensor, labels: np.ndarray, ks: list[int]
) -> dict[str, float]:
    """``{"<split>/<metric>": value}``: retrieval metrics except on eval_train, space metrics always."""
    metrics: dict[str, float] = {}
    if split != "train":
        metrics.update(retrieval_metrics(embeddings, labels, ks=tuple(ks)))
    metrics.update(embedding_space_metrics(embeddings, labels))
    return {f"{split}/{k}": float(v) for k, v in metrics.items()}


def subsample_indices(
    num_items: int, max_points: int = SNAPSHOT_MAX_POINTS, seed: int = 0
) -> np.ndarray:
    """At most ``max_points`` sorted indices, the same for every call with the same arguments."""
    if num_items <= max_points:
        return np.arange(num_items)
    return np.sort(np.random.default_rng(seed).choice(num_items, size=max_points, replace=False))


def evaluate_checkpoint(
    path: str | Path,
    *,
    data_root: str | None = None,
    device: str = "auto",
    splits: tuple[str, ...] = ("test", "eval_train"),
    batch_size: int = 256,
) -> dict[str, float]:
    """Every metric of a checkpoint on ``splits`` (keys ``test/…``, ``train/…``)."""
    from dml_core.engine.checkpoint import load_checkpoint

    torch_device = resolve_device(device)
    model, metadata = load_checkpoint(path, device=torch_device)
    config = TrainConfig.from_dict(metadata["config"])
    metrics: dict[str, float] = {}
    for split in splits:
        dataset = build_split(config, split, data_root)
        embeddings, labels = compute_embeddings(
            model, dataset, device=torch_device, batch_size=batch_size, amp=config.amp
        )
        name = "train" if split == "eval_train" else split
        metrics.update(split_metrics(name, embeddings, labels, config.eval_ks))
    return metrics
