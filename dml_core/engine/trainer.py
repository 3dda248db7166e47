"""One training loop for the toy and for image benchmarks, on CPU, CUDA or several GPUs (torchrun).

Data flow (DESIGN.md §2): TrainConfig → dataset + sampler → model → embeddings → miner (→ ρ) → loss →
optimizer; every ``eval_every`` epochs the evaluator writes metrics to ``events.jsonl`` and a snapshot;
``best.safetensors`` on improvement and ``last.safetensors`` at every epoch end, each with the
resumable state (``train_state.pt``, tensors and plain values only, read with ``weights_only=True``).

``Trainer.steps()`` yields one event per step and per evaluation, so a caller (the app's toy lab) can
draw as training goes; ``Trainer.run()`` trains to the end.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from dml_core.config import TrainConfig
from dml_core.engine.checkpoint import load_tensors, save_checkpoint
from dml_core.engine.distributed import DistContext, gather_global_batch
from dml_core.engine.evaluation import (
    SNAPSHOT_AUTO_LIMIT,
    autocast_context,
    build_split,
    compute_embeddings,
    in_memory_inputs,
    resolve_device,
    split_metrics,
    subsample_indices,
)
from dml_core.engine.events import EventLog
from dml_core.engine.loggers import Trackers
from dml_core.io import atomic_save_npz, atomic_write
from dml_core.losses import build_loss, check_compatible
from dml_core.miners import build_miner
from dml_core.models import build_model
from dml_core.samplers import build_sampler

STATE_FILE = "train_state.pt"
LOWER_IS_BETTER = ("rho@1", "rho@2", "pi_ratio", "uniformity")


class NonFiniteLossError(RuntimeError):
    """The loss (or, checked at each epoch end, a weight) became NaN or infinite; the last good
    checkpoint is kept."""


def _metric_improved(name: str, value: float, best: float | None) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best if name.split("/")[-1] in LOWER_IS_BETTER else value > best


def resolved_dataset_options(dataset: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Every generation option of a generated dataset (its ``spec`` dataclass), so a checkpoint
    rebuilds the same data even after the generator's defaults change; other datasets: as given."""
    spec = getattr(getattr(dataset, "base", dataset), "spec", None)
    if spec is None or not dataclasses.is_dataclass(spec):
        return dict(options)
    return json.loads(json.dumps(dataclasses.asdict(spec)))


def default_miner(loss: Any) -> str | None:
    """The miner a loss takes when the config says ``auto``."""
    return {"triplet": "distance", "npair": "npair", "lifted": "lifted"}.get(loss.miner_kind)


class Trainer:
    """Builds everything a TrainConfig names and trains it; see the module docstring."""

    def __init__(
        self,
        config: TrainConfig,
        out_dir: str | Path | None = None,
        *,
        resume: bool = False,
        progress: bool | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.context = DistContext.from_env()
        self.device = resolve_device(config.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        writes = self.out_dir is not None and self.context.is_main
        if progress is None:
            progress = writes and sys.stderr.isatty()
        self.progress = progress
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)

        self.train_set = build_split(config, "train")
        config.dataset_options = resolved_dataset_options(self.train_set, config.dataset_options)
        self.test_set = build_split(config, "test")
        self.eval_train_set = build_split(config, "eval_train")
        self.val_set = build_split(config, "val") if config.val_classes > 0 else None
        self.train_inputs = in_memory_inputs(self.train_set)

        self.model = self._build_model().to(self.device)
        self.loss = build_loss(
            config.loss,
            num_classes=self.train_set.num_classes,
            embed_dim=config.embed_dim,
            **config.loss_options,
        ).to(self.device)
        self.miner_generator = torch.Generator(device=self.device).manual_seed(config.seed)
        miner_name = default_miner(self.loss) if config.miner == "auto" else config.miner
        self.miner = None
        if miner_name is not None:
            self.miner = build_miner(
                miner_name, rho=config.rho, generator=self.miner_generator, **config.miner_options
            )
        elif config.rho > 0:
            raise ValueError(
                f"--rho {config.rho} needs a triplet miner, but loss {config.loss!r} takes none "
                "(it mines internally); use a triplet-based loss such as margin"
            )
        check_compatible(self.loss, self.miner)
        if config.batch_size % (self.context.world_size * config.samples_per_class):
            raise ValueError(
                f"batch_size {config.batch_size} must be a multiple of world_size × samples_per_class "
                f"= {self.context.world_size} × {config.samples_per_class}"
            )
        self.sampler = build_sampler(
            config.sampler,
            self.train_set.labels,
            config.batch_size,
            config.samples_per_class,
            seed=config.seed,
            **config.sampler_options,
        )
        self.optimizer = self._build_optimizer()
        self.scheduler = self._build_scheduler()
        self.train_model: torch.nn.Module = self.model
        if config.compile:
            self.train_model = torch.compile(self.model)
        if self.context.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = torch.nn.parallel.DistributedDataParallel(
                self.train_model, device_ids=device_ids
            )

        self.epoch = 0
        self.batch_in_epoch = 0
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.best: dict[str, Any] = {
            "metric": self._selection_metric(),
            "value": None,
            "epoch": None,
        }
        self.last_loss: torch.Tensor | None = None
        self._stop_requested = False
        self._snapshot_indices = subsample_indices(len(self.test_set))
        self._epoch_batches = _EpochBatches()
        self._loader: DataLoader | None = None

        self.events = EventLog(self.out_dir / "events.jsonl" if writes else None)
        self.trackers = Trackers(
            tensorboard=config.tensorboard and self.context.is_main,
            wandb=config.wandb and self.context.is_main,
            out_dir=self.out_dir,
            config=config.to_dict(),
        )
        if resume:
            self._load_state()
        elif writes:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if (self.out_dir / "last.safetensors").exists():
                raise FileExistsError(
                    f"{self.out_dir} already holds a run; use --resume {self.out_dir} or another --out"
                )
            config.save(self.out_dir / "config.json")

    # --- construction ---------------------------------------------------------------------------

    def _build_model(self) -> torch.nn.Module:
        config = self.config
        shape = tuple(self.train_set.input_shape)
        model = build_model(
            config.arch,
            config.embed_dim,
            pretrained=config.pretrained,
            frozen_bn=config.frozen_bn,
            normalize=config.normalize,
            in_channels=shape[0] if len(shape) == 3 else 3,
        )
        if config.channels_last and len(shape) == 3:
            model = model.to(memory_format=torch.channels_last)
        return model

    def _build_optimizer(self) -> torch.optim.Optimizer:
        config = self.config
        groups = [{"params": list(self.model.parameters()), "weight_decay": config.weight_decay}]
        loss_parameters = [p for p in self.loss.parameters() if p.requires_grad]
        if loss_parameters:
            loss_lr = config.loss_lr or getattr(self.loss, "param_lr", None) or config.lr
            groups.append({"params": loss_parameters, "lr": loss_lr, "weight_decay": 0.0})
        if config.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
        optimizer_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        return optimizer_class(groups, lr=config.lr)

    def _build_scheduler(self) -> torch.optim.lr_scheduler.LRScheduler | None:
        config = self.config
        if config.scheduler == "step":
            return torch.optim.lr_scheduler.MultiStepLR(
                self.optimizer, milestones=config.lr_milestones, gamma=config.lr_gamma
            )
        if config.scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=config.epochs)
        return None

    def _selection_metric(self) -> str:
        split = "val" if self.val_set is not None else "test"
        return f"{split}/{self.config.best_metric}"

    # --- the loop -------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the current step, write ``last`` and end the run cleanly (also on SIGINT/SIGTERM)."""
        self._stop_requested = True

    def run(self) -> dict[str, Any]:
        """Train to the end (or to a stop request); returns the final event."""
        final: dict[str, Any] = {}
        with self._signals_handled():
            for event in self.steps():
                if event["kind"] == "done":
                    final = event
        return final

    def steps(self) -> Iterator[dict[str, Any]]:
        """Yield one event per step and per evaluation; the last one has kind ``done``."""
        config = self.config
        yield self.events.write(
            "start",
            epoch=self.epoch,
            step=self.step,
            config=config.to_dict(),
            world_size=self.context.world_size,
            device=str(self.device),
            train_items=len(self.train_set),
            test_items=len(self.test_set),
        )
        bar = self._progress_bar()
        try:
            while self.epoch < config.epochs:
                yield from self._train_epoch(bar)
                if self._stop_requested:
                    break
                self.epoch += 1
                self.batch_in_epoch = 0
                if self.scheduler is not None:
                    self.scheduler.step()
                if self.epoch % config.eval_every == 0 or self.epoch == config.epochs:
                    yield self._evaluate()
                if self.epoch % config.checkpoint_every == 0 or self.epoch == config.epochs:
                    self._save("last")
        except Exception as error:
            self.events.write("error", epoch=self.epoch, step=self.step, message=str(error))
            self.events.close()
            self.trackers.close()
            raise
        finally:
            if bar is not None:
                bar.close()
        if self._stop_requested:
            self._save("last")
        yield self.events.write(
            "done",
            epoch=self.epoch,
            step=self.step,
            reason="stopped" if self._stop_requested else "finished",
            best=self.best,
        )
        self.events.close()
        self.trackers.close()

    def _train_epoch(self, bar: Any) -> Iterator[dict[str, Any]]:
        config = self.config
        if getattr(self.sampler, "needs_embeddings", False):
            embeddings, _ = compute_embeddings(
                self.model,
                self.eval_train_set,
                device=self.device,
                batch_size=config.eval_batch_size,
            )
            self.sampler.update_embeddings(embeddings)
        self.sampler.set_epoch(self.epoch)
        self.model.train()
        non_finite = torch.zeros((), dtype=torch.bool, device=self.device)
        loss_sum = torch.zeros((), device=self.device)
        started = time.perf_counter()
        first = self.batch_in_epoch
        last = len(self.sampler)
        if config.max_steps_per_epoch is not None:
            last = min(last, config.max_steps_per_epoch)
        batches = [
            self.context.local_slice(list(b)) for b in itertools.islice(self.sampler, first, last)
        ]
        for batch_index, (inputs, labels) in enumerate(self._load(batches), start=first):
            loss = self._train_step(inputs, labels)
            non_finite |= ~torch.isfinite(loss)
            loss_sum += loss
            self.step += 1
            self.batch_in_epoch = batch_index + 1
            event = {"kind": "step", "epoch": self.epoch, "step": self.step}
            check_now = self.step % config.log_every == 0 or self.device.type == "cpu"
            if check_now and bool(non_finite):
                self._raise_non_finite()
            if self.step % config.log_every == 0:
                stats = {k: float(v) for k, v in self._stats().items()}
                event = self.events.write(
                    "step", epoch=self.epoch, step=self.step, loss=float(loss), **stats
                )
                self.trackers.log({"train/loss": event["loss"], **stats}, self.step)
                if bar is not None:
                    bar.set_postfix(loss=f"{float(loss):.4f}")
            if bar is not None:
                bar.update(1)
            yield event
            if self._stop_requested:
                return
        weights_finite = torch.stack([p.detach().isfinite().all() for p in self.model.parameters()])
        if bool(non_finite) or not bool(weights_finite.all()):
            self._raise_non_finite()
        if self.batch_in_epoch > first:
            self.events.write(
                "epoch",
                epoch=self.epoch + 1,
                step=self.step,
                mean_loss=float(loss_sum) / (self.batch_in_epoch - first),
                seconds=round(time.perf_counter() - started, 3),
                lr=self.optimizer.param_groups[0]["lr"],
            )

    def _load(self, batches: list[list[int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(inputs, labels) on the device for each batch of dataset indices."""
        if self.train_inputs is not None:
            labels_all = torch.as_tensor(self.train_set.labels)
            for batch in batches:
                index = torch.as_tensor(batch)
                yield (
                    self.train_inputs[index].to(self.device, non_blocking=True),
                    labels_all[index].to(self.device, non_blocking=True),
                )
            return
        if self._loader is None:
            # One loader for the whole run, so worker processes persist across epochs; each epoch
            # hands it that epoch's batches.
            self._loader = DataLoader(
                self.train_set,
                batch_sampler=self._epoch_batches,
                num_workers=self.config.num_workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=self.config.num_workers > 0,
            )
        self._epoch_batches.batches = batches
        channels_last = self.config.channels_last
        for inputs, labels, _ in self._loader:
            inputs = inputs.to(self.device, non_blocking=True)
            if channels_last and inputs.dim() == 4:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            yield inputs, labels.to(self.device, non_blocking=True)

    def _train_step(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with autocast_context(self.device, self.config.amp):
            local_embeddings = self.train_model(inputs)
        loss = self.batch_loss(local_embeddings.float(), labels)
        scaled = loss * self.context.world_size if self.context.enabled else loss
        self.optimizer.zero_grad(set_to_none=True)
        scaled.backward()
        if self.context.enabled:
            for parameter in self.loss.parameters():
                if parameter.grad is not None:
                    parameter.grad /= self.context.world_size
        self.optimizer.step()
        self.last_loss = loss.detach()
        return self.last_loss

    def batch_loss(
        self, local_embeddings: torch.Tensor, local_labels: torch.Tensor
    ) -> torch.Tensor:
        """Gather the global batch, mine (with ρ) and compute the loss: identical on every rank."""
        embeddings, labels = gather_global_batch(local_embeddings, local_labels, self.context)
        triplets = self.miner(embeddings, labels) if self.miner is not None else None
        return self.loss(embeddings, labels, triplets)

    def _stats(self) -> dict[str, torch.Tensor]:
        stats = {f"loss_{k}": v for k, v in getattr(self.loss, "stats", {}).items()}
        if self.miner is not None:
            stats.update({f"miner_{k}": v for k, v in getattr(self.miner, "stats", {}).items()})
        return stats

    def _raise_non_finite(self) -> None:
        raise NonFiniteLossError(
            f"the loss or the weights became non-finite at epoch {self.epoch}, step {self.step}; the run "
            "stopped and "
            "the last good checkpoint was kept. Lower --lr, or check the data for broken inputs."
        )

    # --- evaluation, snapshots, checkpoints -----------------------------------------------------

    def _embed(self, dataset: Any) -> tuple[torch.Tensor, np.ndarray]:
        return compute_embeddings(
            self.model,
            dataset,
            device=self.device,
            batch_size=self.config.eval_batch_size,
            num_workers=self.config.num_workers,
            amp=self.config.amp,
        )

    def evaluate(self) -> dict[str, float]:
        """Metrics of the current model on test, eval_train (as ``train/…``) and val."""
        ks = self.config.eval_ks
        test_embeddings, test_labels = self._embed(self.test_set)
        metrics = split_metrics("test", test_embeddings, test_labels, ks)
        metrics.update(split_metrics("train", *self._embed(self.eval_train_set), ks))
        if self.val_set is not None:
            metrics.update(split_metrics("val", *self._embed(self.val_set), ks))
        self._last_test_embeddings = (test_embeddings, test_labels)
        return metrics

    def _evaluate(self) -> dict[str, Any]:
        if not self.context.is_main:
            # Rank 0 alone evaluates and writes; the others wait at the next collective.
            return {"kind": "eval", "epoch": self.epoch, "step": self.step, "metrics": {}}
        metrics = self.evaluate()
        self.history.append({"epoch": self.epoch, "step": self.step, **metrics})
        snapshot = self._write_snapshot()
        selected = self.best["metric"]
        improved = _metric_improved(selected, metrics.get(selected, math.nan), self.best["value"])
        if improved:
            self.best.update(value=metrics[selected], epoch=self.epoch)
            self._save("best")
        self.trackers.log(metrics, self.step)
        return self.events.write(
            "eval",
            epoch=self.epoch,
            step=self.step,
            metrics=metrics,
            snapshot=snapshot,
            best=dict(self.best),
            improved=improved,
        )

    def _snapshots_enabled(self) -> bool:
        mode = self.config.snapshots
        return mode == "on" or (mode == "auto" and len(self.test_set) < SNAPSHOT_AUTO_LIMIT)

    def _write_snapshot(self) -> str | None:
        if self.out_dir is None or not self._snapshots_enabled():
            return None
        embeddings, labels = self._last_test_embeddings
        index = self._snapshot_indices
        name = f"snapshots/epoch_{self.epoch:03d}.npz"
        atomic_save_npz(
            self.out_dir / name,
            embeddings=embeddings[torch.as_tensor(index, device=embeddings.device)].cpu().numpy(),
            labels=labels[index],
            indices=index,
            epoch=np.array(self.epoch),
        )
        return name

    def checkpoint_metadata(self, kind: str) -> dict[str, Any]:
        config = self.config
        splits = {
            "train": list(self.train_set.class_names),
            "test": list(self.test_set.class_names),
        }
        if self.val_set is not None:
            splits["val"] = list(self.val_set.class_names)
        return {
            "kind": kind,
            "config": config.to_dict(),
            "model": self.model.config(),
            "dataset": {"name": config.dataset, "root": config.data_root, "classes": splits},
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history,
            "best": dict(self.best),
            "selected_on": self.best["metric"].split("/")[0],
        }

    def _save(self, kind: str) -> None:
        if self.out_dir is None or not self.context.is_main:
            return
        save_checkpoint(
            self.out_dir / f"{kind}.safetensors",
            self.model,
            self.checkpoint_metadata(kind),
            loss=self.loss,
        )
        if kind == "last":
            state = {
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "step": self.step,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
                "torch_rng": torch.get_rng_state(),
                "miner_rng": self.miner_generator.get_state(),
                "best_value": self.best["value"],
                "best_epoch": self.best["epoch"],
            }
            atomic_write(self.out_dir / STATE_FILE, lambda tmp: torch.save(state, tmp))

    def _load_state(self) -> None:
        """Continue from ``last.safetensors`` and ``train_state.pt`` (no pickle involved)."""
        from dml_core.engine.checkpoint import read_metadata

        if self.out_dir is None:
            raise ValueError("resume needs the run directory")
        last = self.out_dir / "last.safetensors"
        state_path = self.out_dir / STATE_FILE
        if not last.exists() or not state_path.exists():
            raise FileNotFoundError(
                f"cannot resume {self.out_dir}: expected last.safetensors and {STATE_FILE} there"
            )
        self.model.load_state_dict(load_tensors(last, "model"))
        self.loss.load_state_dict(load_tensors(last, "loss"))
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"]:
            self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        self.miner_generator.set_state(
            state["miner_rng"].to(self.miner_generator.get_state().device)
        )
        self.epoch, self.batch_in_epoch, self.step = (
            state["epoch"],
            state["batch_in_epoch"],
            state["step"],
        )
        self.history = list(read_metadata(last)["history"])
        self.best.update(value=state["best_value"], epoch=state["best_epoch"])

    # --- terminal niceties ----------------------------------------------------------------------

    def _progress_bar(self) -> Any:
        if not self.progress:
            return None
        from tqdm import tqdm

        steps_per_epoch = len(self.sampler)
        if self.config.max_steps_per_epoch is not None:
            steps_per_epoch = min(steps_per_epoch, self.config.max_steps_per_epoch)
        return tqdm(total=steps_per_epoch * self.config.epochs, initial=self.step, unit="step")

    @contextmanager
    def _signals_handled(self) -> Iterator[None]:
        """SIGINT/SIGTERM request a clean stop while ``run`` trains (main thread only: Streamlit
        runs scripts in other threads, where handlers cannot be installed)."""
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, lambda *_: self.request_stop())
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


class _EpochBatches:
    """The current epoch's batches of dataset indices: the batch sampler of the run's one loader."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)
