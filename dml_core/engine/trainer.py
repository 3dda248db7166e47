"""One training loop for the toy and for image benchmarks, on CPU, CUDA or several GPUs (torchrun).

Data flow (docs/DESIGN.md §2): TrainConfig → ``assemble_run`` (splits, model, loss, miner, sampler,
optimizer) → per step: embeddings → miner (→ ρ) → loss → optimizer; every ``eval_every`` epochs the
evaluator writes metrics to ``events.jsonl`` and a snapshot; ``best.safetensors`` on improvement and
``last.safetensors`` with the resumable ``TrainState`` every ``checkpoint_every`` epochs
(``engine/checkpoint.py`` writes and reads both).

``Trainer.steps()`` yields one event per step and per evaluation, so a caller (the app's toy lab) can
draw as training goes; ``Trainer.run()`` trains to the end.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import torch

from dml_core.config import TrainConfig
from dml_core.engine.assembly import assemble_run, open_logs
from dml_core.engine.batches import TrainBatches
from dml_core.engine.checkpoint import run_header, save_run_checkpoint
from dml_core.engine.distributed import DistContext, gather_global_batch
from dml_core.engine.evaluation import (
    CheckpointEmbeddings,
    autocast_context,
    resolve_device,
)
from dml_core.engine.run_evaluation import RunEvaluator, has_converged
from dml_core.engine.run_folder import (
    capture_train_state,
    check_out_dir,
    open_run_folder,
    restore_train_state,
    split_class_names,
)
from dml_core.engine.terminal import progress_bar, stop_on_signals
from dml_core.io import FolderLock
from dml_core.metrics._inputs import EmbeddingRangeError
from dml_core.metrics.direction import improves


class NonFiniteLossError(FloatingPointError):
    """The loss (or, checked at each epoch end, a weight) became NaN or infinite, or an evaluation's
    embeddings left the range metrics accept (``EmbeddingRangeError``); the last good checkpoint is
    kept."""


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
        """Build the run ``config`` describes (the caller's config is not changed: ``self.config``
        is a copy with the dataset options resolved) and, with ``resume``, load its last state."""
        config.validate()
        self.context = DistContext.from_env()
        self.device = resolve_device(config.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        writes = self.out_dir is not None and self.context.is_main
        if progress is None:
            progress = writes and sys.stderr.isatty()
        self.progress = progress
        self._lock = FolderLock(self.out_dir) if writes else None
        if writes:
            # Early, before any data is built; again under the lock.
            check_out_dir(self.out_dir, resume)

        parts = assemble_run(config, self.context, self.device)
        self.config = parts.config
        self.train_set, self.test_set = parts.train_set, parts.test_set
        self.eval_train_set, self.val_set = parts.eval_train_set, parts.val_set
        self.model, self.train_model = parts.model, parts.train_model
        self.loss, self.miner, self.miner_generator = parts.loss, parts.miner, parts.miner_generator
        self.sampler, self.optimizer = parts.sampler, parts.optimizer
        self.scheduler = parts.scheduler
        self.batches = TrainBatches(
            self.train_set,
            self.device,
            num_workers=self.config.num_workers,
            channels_last=self.config.channels_last,
        )

        self.epoch = 0
        self.batch_in_epoch = 0
        self.step = 0
        self.history: list[dict[str, float]] = []
        split = "val" if self.val_set is not None else "test"
        self.best: dict[str, Any] = {
            "metric": f"{split}/{self.config.best_metric}",
            "value": None,
            "epoch": None,
        }
        self.last_loss: torch.Tensor | None = None
        self._stop_requested = False
        self._test_embedded_at: int | None = None
        """Step of the evaluator's last test embeddings."""
        self._saved_test_splits: dict[str, CheckpointEmbeddings] = {}
        """Per checkpoint kind, the test embeddings of exactly its saved weights, when known."""
        self.evaluator = RunEvaluator(
            self.model,
            self.config,
            self.device,
            test_set=self.test_set,
            eval_train_set=self.eval_train_set,
            val_set=self.val_set,
        )
        self.evaluator.check_split_sizes()

        if writes:
            open_run_folder(self.out_dir, self._lock, self.config, resume)
        try:
            if resume:
                # Rank 0 settled an interrupted checkpoint above: no rank reads `last` before.
                self.context.wait_for_all()
                self._load_state()
            # Trackers (a W&B run, a TensorBoard writer) open only once every check has passed.
            self.events, self.trackers = open_logs(self.config, self.context, self.out_dir)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the event log and trackers and release the run folder (``steps`` does this at
        its end; call it for a Trainer that is built but not run)."""
        for handle in (getattr(self, "events", None), getattr(self, "trackers", None)):
            if handle is not None:
                handle.close()
        if self._lock is not None:
            self._lock.release()

    # --- the loop -------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the current step, write ``last`` and end the run cleanly (also on SIGINT/SIGTERM)."""
        self._stop_requested = True

    def run(self) -> dict[str, Any]:
        """Train to the end (or to a stop request); returns the final event."""
        final: dict[str, Any] = {}
        with stop_on_signals(self.request_stop):
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
        bar = None
        if self.progress:
            bar = progress_bar(self._steps_per_epoch() * config.epochs, initial=self.step)
        converged = self._has_converged()  # a resumed run that had converged ends at once
        try:
            while self.epoch < config.epochs and not converged:
                yield from self._train_epoch(bar)
                if self._stop_requested:
                    break
                self.epoch += 1
                self.batch_in_epoch = 0
                if self.scheduler is not None:
                    self.scheduler.step()
                if self.epoch % config.eval_every == 0 or self.epoch == config.epochs:
                    yield self._evaluate()
                    converged = self._has_converged()
                last_epoch = self.epoch == config.epochs or converged
                if self.epoch % config.checkpoint_every == 0 or last_epoch:
                    self._save("last")
        except Exception as error:
            with suppress(OSError):  # a full disk may refuse this line too
                self.events.write("error", epoch=self.epoch, step=self.step, message=str(error))
            self.close()
            raise
        finally:
            if bar is not None:
                bar.close()
        if self._stop_requested:
            self._save("last")
        if self.out_dir is not None and self.context.is_main:
            # The evaluation travels with best/last (docs/DESIGN.md §6, stored evaluation).
            from dml_core.engine.stored_evaluation import store_run_evaluations

            store_run_evaluations(self.out_dir, self.device, self._saved_test_splits)
        end_reason = "converged" if converged else "finished"
        yield self.events.write(
            "done",
            epoch=self.epoch,
            step=self.step,
            reason="stopped" if self._stop_requested else end_reason,
            best=self.best,
        )
        self.close()

    def _train_epoch(self, bar: Any) -> Iterator[dict[str, Any]]:
        config = self.config
        if self.sampler.needs_embeddings:
            self.sampler.update_embeddings(self.evaluator.train_embeddings())
        self.sampler.set_epoch(self.epoch)
        self.model.train()
        non_finite = torch.zeros((), dtype=torch.bool, device=self.device)
        loss_sum = torch.zeros((), device=self.device)
        started = time.perf_counter()
        first, last = self.batch_in_epoch, self._steps_per_epoch()
        # After a resume the sampler starts at batch ``first`` of this epoch (its load_state_dict).
        batches = [
            self.context.local_slice(list(b)) for b in itertools.islice(self.sampler, last - first)
        ]
        loader = self.batches(batches, epoch=self.epoch, first_batch=first)
        for batch_index, (inputs, labels) in enumerate(loader, start=first):
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
        stats = {f"loss_{k}": v for k, v in self.loss.stats.items()}
        if self.miner is not None:
            stats.update({f"miner_{k}": v for k, v in self.miner.stats.items()})
        return stats

    def _steps_per_epoch(self) -> int:
        """The sampler's batches per epoch, capped at ``max_steps_per_epoch``."""
        cap = self.config.max_steps_per_epoch
        return len(self.sampler) if cap is None else min(len(self.sampler), cap)

    def _raise_non_finite(self, what: str = "the loss or the weights became non-finite") -> None:
        raise NonFiniteLossError(
            f"{what} at epoch {self.epoch}, step {self.step}; the run stopped and the last good "
            "checkpoint was kept. Lower --lr, or check the data for broken inputs."
        )

    # --- evaluation, snapshots, checkpoints -----------------------------------------------------

    def _evaluate(self) -> dict[str, Any]:
        if not self.context.is_main:
            # Rank 0 alone evaluates and writes; the others wait at the next collective.
            return {"kind": "eval", "epoch": self.epoch, "step": self.step, "metrics": {}}
        try:
            metrics = self.evaluator.evaluate()
        except EmbeddingRangeError as error:  # diverged: finite weights, embeddings out of range
            self._raise_non_finite(f"the run diverged ({error})")
        self._test_embedded_at = self.step
        self.history.append({"epoch": self.epoch, "step": self.step, **metrics})
        snapshot = self.evaluator.write_snapshot(self.out_dir, self.epoch)
        selected = self.best["metric"]
        improved = improves(selected, metrics.get(selected, float("nan")), self.best["value"])
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

    def _has_converged(self) -> bool:
        """With ``early_stop``: whether the evaluation history says stop (``has_converged``)."""
        metric = self.best["metric"]
        return has_converged(self.config, self.history, metric, self.context, self.device)

    def checkpoint_header(self, kind: str) -> dict[str, Any]:
        """The metadata ``<kind>.safetensors`` gets now (``engine/checkpoint.py`` lays it out)."""
        class_names = split_class_names(self.train_set, self.test_set, self.val_set)
        return run_header(
            kind,
            config=self.config.to_dict(),
            model_config=self.model.config(),
            class_names=class_names,
            epoch=self.epoch,
            step=self.step,
            history=self.history,
            best=self.best,
        )

    def _save(self, kind: str) -> None:
        if self.out_dir is None or not self.context.is_main:
            return
        state = None
        if kind == "last":
            state = capture_train_state(
                epoch=self.epoch,
                batch_in_epoch=self.batch_in_epoch,
                step=self.step,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                miner_generator=self.miner_generator,
                loader_generator=self.batches.generator,
                best=self.best,
            )
        save_run_checkpoint(
            self.out_dir, self.checkpoint_header(kind), self.model, self.loss, state
        )
        if self._test_embedded_at == self.step:
            self._saved_test_splits[kind] = self.evaluator.last_test_split()
        else:  # trained on since the last evaluation: embedded again at the end
            self._saved_test_splits.pop(kind, None)

    def _load_state(self) -> None:
        """Continue from ``last.safetensors`` and ``train_state.pt`` (no pickle involved); the
        sampler resumes at the first batch not yet trained on (its ``load_state_dict``)."""
        if self.out_dir is None:
            raise ValueError("resume needs the run directory")
        point = restore_train_state(
            self.out_dir,
            model=self.model,
            loss=self.loss,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            miner_generator=self.miner_generator,
            loader_generator=self.batches.generator,
            sampler=self.sampler,
        )
        if point is None:
            return
        state = point.state
        self.epoch, self.batch_in_epoch, self.step = state.epoch, state.batch_in_epoch, state.step
        self.history = point.history
        self.best.update(value=state.best_value, epoch=state.best_epoch)
