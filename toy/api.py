"""Train the diagonal-lines toy (Roth et al., ICML 2020, §4.1) through ``dml_core``'s Trainer.

The published run: MLP 2→30→ReLU→30→ReLU→2 with L2-normalised output, Adam (lr 0.03), 200
iterations, each on a batch of 24 of the 60 train points drawn without replacement, and every
(a, p, n) triplet of the batch in the loss

    L = mean_T d(a,p) + mean_T [0.1 − d(a,n)]₊

(the ``contrastive`` loss with m₊ = 0, m₋ = 0.1 on the ``all`` miner's rows). The four modes:

- ``base``: that loss.
- ``paper``: the published "regularized" run, which changes two things at once: push-triplet
  swaps (a, p, n) → (a, a, p) with probability 0.001 and no pull term (L = mean_T [0.1 − d(a,n)]₊).
- ``rho``: both terms, swaps with probability ``push_probability`` (ρ-regularization, §5).
- ``no_pull``: the pull term dropped, no swaps.

``rho`` and ``no_pull`` separate the published run's two changes. One iteration is one Trainer
epoch of one batch (``max_steps_per_epoch=1``), so each batch is a fresh draw of 24 points.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import faiss
import numpy as np
import torch

from dml_core.config import TrainConfig
from dml_core.data.toy_diagonal import ToyDiagonalDataset
from dml_core.engine.evaluation import compute_embeddings
from dml_core.engine.trainer import Trainer
from dml_core.metrics import (
    embedding_space_metrics,
    leave_one_out_neighbors,
    singular_value_spectrum,
)
from dml_core.presets import preset

TOY_MODES = ("base", "paper", "rho", "no_pull")
TOY_SAMPLERS = ("random", "class_random")
PAPER_SWAP_PROBABILITY = 0.001
"""The published regularized run's swap probability."""
BATCH_SIZE = 24
CLASS_BALANCED_SAMPLES_PER_CLASS = 6
"""``class_random`` batches: all 4 train classes, 6 points each (24 in all)."""
RESULT_METRICS = ("test_recall@1", "train_recall@1", "rho@1", "pi_ratio")
MODE_DESCRIPTIONS = {
    "base": "pull + push, no swaps",
    "paper": "published: swaps 0.001, no pull",
    "rho": "pull + push, swaps with p_ρ",
    "no_pull": "push only, no swaps",
}
"""One line per mode: what its loss keeps and drops."""
RECORDED_FRAMES = 40
"""A recording keeps about this many frames after the start (see :func:`recording_interval`)."""


@dataclass(frozen=True)
class ToySettings:
    """One toy run. ``push_probability`` is used by the ``rho`` mode only; ``sampler`` is
    ``random`` (as published) or ``class_random`` (class-balanced); ``embed_dim`` 3 gives the
    unit sphere."""

    mode: str = "base"
    push_probability: float = 0.2
    sampler: str = "random"
    margin: float = 0.1
    lr: float = 0.03
    iterations: int = 200
    seed: int = 0
    embed_dim: int = 2

    def __post_init__(self) -> None:
        problems = []
        if self.mode not in TOY_MODES:
            problems.append(f"mode must be one of {', '.join(TOY_MODES)}, got {self.mode!r}")
        if self.sampler not in TOY_SAMPLERS:
            problems.append(f"sampler must be random or class_random, got {self.sampler!r}")
        if not 0.0 <= self.push_probability <= 1.0:
            problems.append(f"push_probability must lie in [0, 1], got {self.push_probability}")
        if self.embed_dim not in (2, 3):
            problems.append(f"embed_dim must be 2 or 3, got {self.embed_dim}")
        if self.iterations < 1 or self.lr <= 0 or self.margin <= 0 or self.seed < 0:
            problems.append("iterations, lr and margin must be positive and seed non-negative")
        if problems:
            raise ValueError("invalid ToySettings: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def effective(self) -> dict[str, Any]:
        """The fields this mode trains with: ``push_probability`` only counts in mode ``rho``
        (None elsewhere), so moving its slider changes nothing in the other modes."""
        fields = asdict(self)
        if self.mode != "rho":
            fields["push_probability"] = None
        return fields

    @property
    def swap_probability(self) -> float:
        """The push-triplet probability ρ this mode trains with."""
        return {"paper": PAPER_SWAP_PROBABILITY, "rho": self.push_probability}.get(self.mode, 0.0)

    @property
    def pull_weight(self) -> float:
        """Weight of the pull term mean_T d(a,p): 0 in the modes that drop it."""
        return 0.0 if self.mode in ("paper", "no_pull") else 1.0


def toy_config(settings: ToySettings) -> TrainConfig:
    """The TrainConfig of a toy run: the ``toy`` preset with the mode's loss, miner and ρ.

    Evaluation only at the end, no per-step logging, CPU (a 24×2 batch is latency-bound).
    """
    class_balanced = settings.sampler == "class_random"
    return TrainConfig.from_dict(
        {
            **preset("toy"),
            "dataset_options": {"seed": settings.seed},
            "embed_dim": settings.embed_dim,
            "loss": "contrastive",
            "loss_options": {
                "pos_margin": 0.0,
                "neg_margin": settings.margin,
                "pos_weight": settings.pull_weight,
            },
            "miner": "all",
            "rho": settings.swap_probability,
            "sampler": settings.sampler,
            "samples_per_class": CLASS_BALANCED_SAMPLES_PER_CLASS if class_balanced else 1,
            "batch_size": BATCH_SIZE,
            "epochs": settings.iterations,
            "max_steps_per_epoch": 1,
            "lr": settings.lr,
            "seed": settings.seed,
            "eval_every": settings.iterations,
            "log_every": settings.iterations,
            "eval_ks": [1],
            "device": "cpu",
            "amp": "off",
            "snapshots": "off",
        }
    )


def toy_data(seed: int = 0) -> dict[str, np.ndarray]:
    """The toy's points for ``seed``: ``train_points`` (60, 2), ``train_labels`` (60,),
    ``test_points`` (60, 2), ``test_labels`` (60,)."""
    data: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        points, labels = ToyDiagonalDataset(split=split, seed=seed).tensors()
        data[f"{split}_points"] = points.numpy()
        data[f"{split}_labels"] = labels.numpy()
    return data


@dataclass
class ToyFrame:
    """The state after ``step`` iterations: embeddings (unit norm, numpy), the normalised
    singular values of the train embedding, ``metrics`` (``RESULT_METRICS`` of these embeddings,
    :func:`frame_metrics`) and the last step's loss (NaN at step 0); ``done`` on the last frame."""

    step: int
    loss: float
    train_embeddings: np.ndarray
    test_embeddings: np.ndarray
    spectrum: np.ndarray
    done: bool
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class ToyResult:
    """A finished run: ``metrics`` (``RESULT_METRICS``), final embeddings and spectrum, and the loss
    of every iteration."""

    settings: ToySettings
    metrics: dict[str, float]
    spectrum: np.ndarray
    train_embeddings: np.ndarray
    test_embeddings: np.ndarray
    train_labels: np.ndarray
    test_labels: np.ndarray
    losses: np.ndarray = field(repr=False)


def use_one_thread() -> None:
    """One torch and one faiss thread from now on (a study's worker processes start with this)."""
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)


@contextmanager
def single_thread() -> Iterator[None]:
    """One torch and one faiss thread while the toy computes: its arrays are tiny, and on a busy
    machine OpenMP workers waiting for each other cost more than the arithmetic."""
    torch_threads, faiss_threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    use_one_thread()
    try:
        yield
    finally:
        torch.set_num_threads(torch_threads)
        faiss.omp_set_num_threads(faiss_threads)


def leave_one_out_recall_at_1(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of items whose nearest other item (excluded by index) shares their label."""
    nearest, _ = leave_one_out_neighbors(embeddings, 1)
    return float((labels[nearest[:, 0]] == labels).mean())


def frame_metrics(
    train_embeddings: np.ndarray,
    train_labels: np.ndarray,
    test_embeddings: np.ndarray,
    test_labels: np.ndarray,
) -> dict[str, float]:
    """``RESULT_METRICS`` of one frame: leave-one-out Recall@1 of each split, ρ@1 and π_ratio of
    the train embedding (docs/DESIGN.md §3); the last frame's equal the trainer's evaluation."""
    space = embedding_space_metrics(train_embeddings, train_labels)
    return {
        "test_recall@1": leave_one_out_recall_at_1(test_embeddings, test_labels),
        "train_recall@1": leave_one_out_recall_at_1(train_embeddings, train_labels),
        "rho@1": space["rho@1"],
        "pi_ratio": space["pi_ratio"],
    }


def recording_interval(iterations: int) -> int:
    """Steps between recorded frames: about ``RECORDED_FRAMES`` frames per run, at least 1."""
    return max(1, round(iterations / RECORDED_FRAMES))


class ToyRun:
    """One run of the toy stepping through ``Trainer.steps()``; keeps every step's loss (as a
    tensor: no device sync per step) and the final evaluation's metrics."""

    def __init__(self, settings: ToySettings) -> None:
        self.settings = settings
        with single_thread():
            self.trainer = Trainer(toy_config(settings))
        self.events = self.trainer.steps()
        self.step_losses: list[torch.Tensor] = []
        self.final_metrics: dict[str, float] = {}
        self.finished = False

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """(train, test) embeddings of the current model as numpy arrays."""
        trainer = self.trainer
        return tuple(
            compute_embeddings(trainer.model, split, device=trainer.device)[0].cpu().numpy()
            for split in (trainer.eval_train_set, trainer.test_set)
        )

    def _advance(self, every: int) -> bool:
        """Train until the next frame is due; False once the run has ended."""
        for event in self.events:
            if event["kind"] == "step":
                self.step_losses.append(self.trainer.last_loss)
                if event["step"] % every == 0 and event["step"] < self.settings.iterations:
                    return True
            elif event["kind"] == "eval":
                self.final_metrics = event["metrics"]
            elif event["kind"] == "done":
                self.finished = True
                return True
        return False

    def _frame(self, loss: float, metrics: bool) -> ToyFrame:
        train_embeddings, test_embeddings = self.embeddings()
        return ToyFrame(
            step=self.trainer.step,
            loss=loss,
            train_embeddings=train_embeddings,
            test_embeddings=test_embeddings,
            spectrum=singular_value_spectrum(train_embeddings),
            done=self.finished,
            metrics=frame_metrics(
                train_embeddings,
                np.asarray(self.trainer.eval_train_set.labels),
                test_embeddings,
                np.asarray(self.trainer.test_set.labels),
            )
            if metrics
            else {},
        )

    def frames(self, every: int, start: bool = False, metrics: bool = True) -> Iterator[ToyFrame]:
        """A frame every ``every`` steps and one (``done``) at the end; with ``start``, first the
        untrained network's (step 0, loss NaN); without ``metrics`` the frames' ``metrics`` stay
        empty (:func:`run_toy` takes its own from the trainer's evaluation)."""
        if every < 1:
            raise ValueError(f"every must be a positive number of steps, got {every}")
        if start:
            with single_thread():
                frame = self._frame(float("nan"), metrics)
            yield frame
        while True:
            with single_thread():
                if not self._advance(every):
                    return
                frame = self._frame(float(self.trainer.last_loss), metrics)
            yield frame

    def result(self, frame: ToyFrame) -> ToyResult:
        """The finished run's result, from its last frame."""
        train_labels = np.asarray(self.trainer.eval_train_set.labels)
        train_recall = frame.metrics.get("train_recall@1")
        if train_recall is None:
            with single_thread():
                train_recall = leave_one_out_recall_at_1(frame.train_embeddings, train_labels)
        metrics = {
            "test_recall@1": self.final_metrics["test/recall@1"],
            "train_recall@1": train_recall,
            "rho@1": self.final_metrics["train/rho@1"],
            "pi_ratio": self.final_metrics["train/pi_ratio"],
        }
        return ToyResult(
            settings=self.settings,
            metrics=metrics,
            spectrum=frame.spectrum,
            train_embeddings=frame.train_embeddings,
            test_embeddings=frame.test_embeddings,
            train_labels=train_labels,
            test_labels=np.asarray(self.trainer.test_set.labels),
            losses=torch.stack(self.step_losses).numpy(),
        )


def train_toy(settings: ToySettings, every: int = 10) -> Iterator[ToyFrame]:
    """Train one mode and seed step by step, yielding a ``ToyFrame`` every ``every`` iterations
    and at the end (``done=True``), for drawing while it trains."""
    yield from ToyRun(settings).frames(every)


@dataclass
class ToyRecording:
    """Every recorded frame of one run, from the untrained network (step 0) to the end, and the
    finished run's result: what the Toy lab replays."""

    frames: list[ToyFrame]
    result: ToyResult

    @property
    def steps(self) -> list[int]:
        return [frame.step for frame in self.frames]


def record_toy(
    settings: ToySettings,
    every: int | None = None,
    on_frame: Callable[[ToyFrame], None] | None = None,
) -> ToyRecording:
    """Train one mode and seed, keeping a frame at step 0, every ``every`` steps (default
    :func:`recording_interval`) and at the end; ``on_frame(frame)`` as each one arrives."""
    run = ToyRun(settings)
    frames = []
    for frame in run.frames(every or recording_interval(settings.iterations), start=True):
        frames.append(frame)
        if on_frame is not None:
            on_frame(frame)
    return ToyRecording(frames=frames, result=run.result(frames[-1]))


def run_toy(settings: ToySettings) -> ToyResult:
    """Train one mode and seed to the end; metrics per ``RESULT_METRICS`` (test Recall@1 on the
    test classes, leave-one-out; ρ@1 and π_ratio of the train embedding)."""
    run = ToyRun(settings)
    *_, last = run.frames(settings.iterations, metrics=False)
    return run.result(last)
