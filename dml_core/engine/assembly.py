"""Everything a TrainConfig names, built once before training: splits, model, loss, miner,
sampler, optimizer, scheduler, the DDP/compiled training model, the event log and the trackers.

The order of construction is part of reproducibility: torch and numpy are seeded first, then the
splits, the model (its initial weights), the loss (its own parameters) and the miner's generator
draw from those streams in that order, so a fixed seed gives the same run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dml_core.config import TrainConfig
from dml_core.data.splits import build_split, resolved_dataset_options
from dml_core.engine.distributed import DistContext
from dml_core.engine.events import EventLog
from dml_core.engine.loggers import Trackers
from dml_core.losses import DMLLoss, build_loss
from dml_core.methods import check_method, default_miner
from dml_core.miners import Miner, build_miner
from dml_core.models import build_model
from dml_core.samplers import BatchSampler, build_sampler


@dataclass
class RunParts:
    """The built pieces of one run; ``config`` is the caller's config with the dataset options
    resolved (every generation option of a generated dataset), the caller's own is left as is."""

    config: TrainConfig
    train_set: Any
    test_set: Any
    eval_train_set: Any
    val_set: Any | None
    model: torch.nn.Module
    train_model: torch.nn.Module
    """``model`` as trained: compiled and/or wrapped in DDP when asked for."""
    loss: DMLLoss
    miner: Miner | None
    miner_generator: torch.Generator
    sampler: BatchSampler
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None


def assemble_run(config: TrainConfig, context: DistContext, device: torch.device) -> RunParts:
    """Check the method, seed, then build every part of the run ``config`` describes (see the
    module docstring). ``miner: "auto"`` is the loss's default miner (``dml_core.methods``)."""
    miner_name = default_miner(config.loss) if config.miner == "auto" else config.miner
    check_method(config.loss, miner_name, config.rho)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    train_set = build_split(config, "train")
    config = config.replace(
        dataset_options=resolved_dataset_options(train_set, config.dataset_options)
    )
    test_set = build_split(config, "test")
    eval_train_set = build_split(config, "eval_train")
    val_set = build_split(config, "val") if config.val_classes > 0 else None

    model = _build_model(config, tuple(train_set.input_shape)).to(device)
    loss = build_loss(
        config.loss,
        num_classes=train_set.num_classes,
        embed_dim=config.embed_dim,
        **config.loss_options,
    ).to(device)
    miner_generator = torch.Generator(device=device).manual_seed(config.seed)
    miner = None
    if miner_name is not None:
        miner = build_miner(
            miner_name, rho=config.rho, generator=miner_generator, **config.miner_options
        )
    loss.use_miner(miner_name, config.rho)
    if config.batch_size % (context.world_size * config.samples_per_class):
        raise ValueError(
            f"batch_size {config.batch_size} must be a multiple of world_size × samples_per_class "
            f"= {context.world_size} × {config.samples_per_class}"
        )
    sampler = build_sampler(
        config.sampler,
        train_set.labels,
        config.batch_size,
        config.samples_per_class,
        seed=config.seed,
        **config.sampler_options,
    )
    optimizer = _build_optimizer(config, model, loss)
    train_model: torch.nn.Module = torch.compile(model) if config.compile else model
    if context.enabled:
        device_ids = [device.index] if device.type == "cuda" else None
        train_model = torch.nn.parallel.DistributedDataParallel(train_model, device_ids=device_ids)
    return RunParts(
        config=config,
        train_set=train_set,
        test_set=test_set,
        eval_train_set=eval_train_set,
        val_set=val_set,
        model=model,
        train_model=train_model,
        loss=loss,
        miner=miner,
        miner_generator=miner_generator,
        sampler=sampler,
        optimizer=optimizer,
        scheduler=_build_scheduler(config, optimizer),
    )


def open_logs(
    config: TrainConfig, context: DistContext, out_dir: Path | None
) -> tuple[EventLog, Trackers]:
    """The run's ``events.jsonl`` and trackers; only the main rank of a run with a directory writes."""
    writes = out_dir is not None and context.is_main
    events = EventLog(out_dir / "events.jsonl" if writes else None)
    trackers = Trackers(
        tensorboard=config.tensorboard and context.is_main,
        wandb=config.wandb and context.is_main,
        out_dir=out_dir,
        config=config.to_dict(),
    )
    return events, trackers


def _build_model(config: TrainConfig, input_shape: tuple[int, ...]) -> torch.nn.Module:
    model = build_model(
        config.arch,
        config.embed_dim,
        pretrained=config.pretrained,
        frozen_bn=config.frozen_bn,
        normalize=config.normalize,
        in_channels=input_shape[0] if len(input_shape) == 3 else 3,
    )
    if config.channels_last and len(input_shape) == 3:
        model = model.to(memory_format=torch.channels_last)
    return model


def _build_optimizer(
    config: TrainConfig, model: torch.nn.Module, loss: DMLLoss
) -> torch.optim.Optimizer:
    """The model's weights with ``weight_decay``; the loss's own parameters (β, proxies) in a
    second group without decay, at ``loss_lr_of(config, loss)``."""
    groups = [{"params": list(model.parameters()), "weight_decay": config.weight_decay}]
    loss_parameters = [p for p in loss.parameters() if p.requires_grad]
    if loss_parameters:
        loss_lr = loss_lr_of(config, loss)
        groups.append({"params": loss_parameters, "lr": loss_lr, "weight_decay": 0.0})
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    optimizer_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(groups, lr=config.lr)


def loss_lr_of(config: TrainConfig, loss: DMLLoss) -> float:
    """The learning rate of the loss's own parameters: ``loss_lr`` when set (absolute), else
    ``lr`` × ``loss_lr_multiplier`` when set, else ``lr`` × the loss's official multiplier
    (``param_lr_multiplier``: margin's β 50×, softmax's class weights 1×)."""
    if config.loss_lr is not None:
        return config.loss_lr
    multiplier = config.loss_lr_multiplier
    if multiplier is None:
        multiplier = loss.param_lr_multiplier if loss.param_lr_multiplier is not None else 1.0
    return config.lr * multiplier


def _build_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=config.lr_milestones, gamma=config.lr_gamma
        )
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    return None
