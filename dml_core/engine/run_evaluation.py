"""The trainer's evaluation side: scoring the run's splits, the test snapshots, early stopping.

``RunEvaluator`` embeds the test, eval_train and val splits of one run and scores them
(``engine/evaluation.py`` computes the metrics) and writes the test embeddings as
``snapshots/epoch_NNN.npz``; ``has_converged`` applies ``should_stop`` to the evaluation history;
``fill_dropped_rows`` gives samplers one embedding row per item of a split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from dml_core.config import TrainConfig
from dml_core.engine.distributed import DistContext
from dml_core.engine.evaluation import (
    SNAPSHOT_AUTO_LIMIT,
    CheckpointEmbeddings,
    compute_embeddings,
    query_gallery,
    split_metrics,
    subsample_indices,
    write_snapshot,
)
from dml_core.engine.stopping import should_stop
from dml_core.metrics.direction import lower_is_better


class RunEvaluator:
    """Scores one run's model on its splits; holds the last test embeddings for the snapshot."""

    def __init__(
        self,
        model: torch.nn.Module,
        config: TrainConfig,
        device: torch.device,
        *,
        test_set: Any,
        eval_train_set: Any,
        val_set: Any | None,
    ) -> None:
        self.model, self.config, self.device = model, config, device
        self.test_set, self.eval_train_set, self.val_set = test_set, eval_train_set, val_set
        self.snapshot_indices = subsample_indices(len(test_set))
        self.last_test_embeddings: tuple | None = None

    def check_split_sizes(self) -> None:
        """Recall@k needs more than k items: checked now, not after a first epoch of training."""
        largest = max(self.config.eval_ks, default=1)
        for name, split in (("test", self.test_set), ("val", self.val_set)):
            if split is not None and len(split) <= largest:
                raise ValueError(
                    f"the {name} split has {len(split)} items, too few for Recall@{largest} "
                    f"(--eval-ks needs each k below the split size); lower --eval-ks or give the "
                    f"{name} split more items"
                )

    def embed(self, dataset: Any, *, return_indices: bool = False) -> tuple:
        return compute_embeddings(
            self.model,
            dataset,
            device=self.device,
            batch_size=self.config.eval_batch_size,
            num_workers=self.config.num_workers,
            amp=self.config.amp,
            return_indices=return_indices,
        )

    def train_embeddings(self) -> np.ndarray:
        """The eval_train split's embeddings with one row per item (``fill_dropped_rows``), for
        samplers that choose batches by embedding (``sampler.needs_embeddings``)."""
        embeddings, _, kept = self.embed(self.eval_train_set, return_indices=True)
        return fill_dropped_rows(embeddings, kept, np.asarray(self.eval_train_set.labels))

    def evaluate(self) -> dict[str, float]:
        """Metrics of the current model on test, eval_train (as ``train/…``) and val."""
        ks = self.config.eval_ks
        spectrum = self.config.rho_spectrum
        knn = self.config.eval_approximate  # None: exact kNN and k-means

        def score(name: str, dataset: Any) -> tuple:
            """Embed ``dataset`` and score it under its query/gallery masks (``query_gallery``)."""
            embeddings, labels, rows = self.embed(dataset, return_indices=True)
            is_query, is_gallery = query_gallery(dataset, rows)
            protocol = {"is_query": is_query, "is_gallery": is_gallery}
            metrics.update(
                split_metrics(
                    name, embeddings, labels, ks, rho_spectrum=spectrum, approximate=knn, **protocol
                )
            )
            return embeddings, labels, rows

        metrics: dict[str, float] = {}
        self.last_test_embeddings = score("test", self.test_set)
        score("train", self.eval_train_set)
        if self.val_set is not None:
            score("val", self.val_set)
        return metrics

    def last_test_split(self) -> CheckpointEmbeddings:
        """The last evaluation's test embeddings as ``embed_checkpoint`` would give them for a
        checkpoint of the model at that moment (so the end of the run stores them as they are)."""
        embeddings, labels, rows = self.last_test_embeddings
        rows = np.asarray(rows)
        is_query, is_gallery = query_gallery(self.test_set, rows)
        return CheckpointEmbeddings(
            embeddings,
            labels,
            rows,
            self.test_set,
            self.config,
            is_query=is_query,
            is_gallery=is_gallery,
        )

    def write_snapshot(self, out_dir: Path | None, epoch: int) -> str | None:
        """The last test embeddings (a fixed subsample) as ``snapshots/epoch_NNN.npz``."""
        mode = self.config.snapshots
        enabled = mode == "on" or (mode == "auto" and len(self.test_set) < SNAPSHOT_AUTO_LIMIT)
        if out_dir is None or not enabled:
            return None
        name = f"snapshots/epoch_{epoch:03d}.npz"
        embeddings, labels, rows = self.last_test_embeddings
        write_snapshot(out_dir / name, embeddings, labels, self.snapshot_indices, epoch, rows=rows)
        return name


def has_converged(
    config: TrainConfig,
    history: list[dict[str, float]],
    metric: str,
    context: DistContext,
    device: torch.device,
) -> bool:
    """With ``early_stop``: whether ``should_stop`` holds for the selection ``metric`` on the
    evaluation history (restored on resume). The main rank, which alone evaluates, decides and
    broadcasts its answer to the other ranks."""
    if not config.early_stop:
        return False
    converged = context.is_main and should_stop(
        history,
        metric,
        min_epochs=config.early_stop_min_epochs,
        min_delta=config.early_stop_min_delta,
        fraction=config.early_stop_fraction,
        from_recovery=config.early_stop_from_recovery,
        lower_is_better=lower_is_better(metric),
    )
    if context.enabled:
        decision = torch.tensor([float(converged)], device=device)
        dist.broadcast(decision, src=0)
        converged = bool(decision.item())
    return converged


def fill_dropped_rows(
    embeddings: torch.Tensor, kept: np.ndarray, labels: np.ndarray
) -> torch.Tensor:
    """One row per item of a split whose unreadable items ``compute_embeddings`` dropped (``kept``:
    the dataset index of each row): a dropped item gets the row of a kept item of its class (of
    any kept item when its whole class was dropped), so samplers index rows by dataset index."""
    if len(kept) == len(labels):
        return embeddings
    kept = np.asarray(kept)
    source = np.full(len(labels), -1)
    source[kept] = np.arange(len(kept))
    for index in np.flatnonzero(source < 0):
        same_class = np.flatnonzero(labels[kept] == labels[index])
        source[index] = same_class[0] if len(same_class) else 0
    return embeddings[torch.as_tensor(source, device=embeddings.device)]
