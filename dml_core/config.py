"""``TrainConfig``: every hyper-parameter of a run, and its JSON/YAML/CLI round trips.

On the ground floor: it imports no other dml_core module. Presets, and the precedence that
combines them with config files and flags, live in :mod:`dml_core.presets`. The defaults are the
paper's fair protocol (Roth et al. 2020, §4; docs/DESIGN.md §5) with the margin loss.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainConfig:
    """One run. Field names are the CLI flags (``--samples-per-class 2``)."""

    # data
    dataset: str = "glyphs"
    data_root: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    image_size: int | None = None
    val_classes: float = 0.0
    """Fraction of the train classes held out for checkpoint selection (0: select on test)."""
    num_workers: int = 0
    # model
    arch: str = "resnet50"
    embed_dim: int = 128
    pretrained: str | None = None
    frozen_bn: bool = True
    normalize: bool = True
    # method
    loss: str = "margin"
    loss_options: dict[str, Any] = field(default_factory=dict)
    miner: str | None = "auto"
    """A miner name, "auto" (the loss's natural miner: distance-weighted for triplet losses) or None."""
    miner_options: dict[str, Any] = field(default_factory=dict)
    rho: float = 0.0
    sampler: str = "class_random"
    samples_per_class: int = 2
    sampler_options: dict[str, Any] = field(default_factory=dict)
    # optimisation
    batch_size: int = 112
    epochs: int = 150
    optimizer: str = "adam"
    lr: float = 1e-5
    weight_decay: float = 4e-4
    momentum: float = 0.9
    loss_lr: float | None = None
    """Absolute learning rate of the loss's own parameters (β, proxies); wins when set."""
    loss_lr_multiplier: float | None = None
    """Their rate relative to ``lr`` when ``loss_lr`` is None; None: the loss's official ratio
    (margin's β 50×, softmax's class weights 1×; ``DMLLoss.param_lr_multiplier``)."""
    scheduler: str = "none"
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.3
    max_steps_per_epoch: int | None = None
    # evaluation and logging
    eval_every: int = 1
    eval_batch_size: int = 256
    eval_ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    best_metric: str = "recall@1"
    early_stop: bool = False
    """Stop ("converged") when ``best_metric`` on the selection split has set no new best over
    the last quarter of at least 4 evaluations (``dml_core.engine.stopping.should_stop``)."""
    early_stop_min_epochs: int = 0
    """Epochs trained before ``early_stop`` may stop a run."""
    early_stop_min_delta: float = 0.0
    """``early_stop`` stops when the last fraction of the evaluations improved the metric by no
    more than this."""
    early_stop_fraction: float = 0.25
    """The last fraction of the evaluations ``early_stop`` looks at (in (0, 1))."""
    early_stop_from_recovery: bool = False
    """``early_stop`` looks only at the evaluations from the first one that beats the run's first
    (``dml_core.engine.stopping``, "from recovery"): a dip after a new head starts is no plateau."""
    rho_spectrum: str = "full"
    """Singular values ρ@k uses: "full" (all) or "official" (the d − 1 largest, as the official
    code's TruncatedSVD); see ``dml_core.metrics.embedding_space``."""
    eval_approximate: str | None = None
    """None (exact kNN and k-means), "hnsw" or "ivf": the approximate evaluation of
    ``dml_core.metrics`` for splits of hundreds of thousands of items (docs/DESIGN.md §3)."""
    snapshots: str = "auto"
    """"auto" (on below 20,000 test items), "on" or "off"."""
    log_every: int = 10
    checkpoint_every: int = 1
    """Epochs between writes of ``last`` (and the resumable state); the final epoch always writes."""
    # runtime
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    """"auto" (bf16 on CUDA, off on CPU), "bf16", "fp16" or "off"."""
    channels_last: bool = True
    compile: bool = False
    wandb: bool = False
    tensorboard: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict, refusing unknown keys with the list of valid ones."""
        config = cls(**checked_fields(values, "invalid TrainConfig"))
        config.validate()
        return config

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def validate(self) -> None:
        """Cheap checks a user can trip over before any data is loaded."""
        problems = []
        if self.batch_size < 2:
            problems.append(f"batch_size must be at least 2, got {self.batch_size}")
        if self.samples_per_class < 1:
            problems.append(f"samples_per_class must be at least 1, got {self.samples_per_class}")
        if not 0.0 <= self.rho <= 1.0:
            problems.append(f"rho is a probability in [0, 1], got {self.rho}")
        if not 0.0 <= self.val_classes < 1.0:
            problems.append(f"val_classes is a fraction in [0, 1), got {self.val_classes}")
        if min(self.epochs, self.eval_every, self.log_every, self.checkpoint_every) < 1:
            problems.append("epochs, eval_every, log_every and checkpoint_every must be positive")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            problems.append(f"optimizer must be adam, adamw or sgd, got {self.optimizer!r}")
        if self.scheduler not in ("none", "step", "cosine"):
            problems.append(f"scheduler must be none, step or cosine, got {self.scheduler!r}")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            problems.append(f"amp must be auto, bf16, fp16 or off, got {self.amp!r}")
        if self.rho_spectrum not in ("full", "official"):
            problems.append(f"rho_spectrum must be full or official, got {self.rho_spectrum!r}")
        if self.early_stop_min_epochs < 0:
            problems.append(f"early_stop_min_epochs must be >= 0, got {self.early_stop_min_epochs}")
        if not 0 < self.early_stop_fraction < 1:
            problems.append(
                f"early_stop_fraction must be in (0, 1), got {self.early_stop_fraction}"
            )
        if self.loss_lr_multiplier is not None and not self.loss_lr_multiplier > 0:
            problems.append(f"loss_lr_multiplier must be positive, got {self.loss_lr_multiplier}")
        if self.eval_approximate not in (None, "hnsw", "ivf"):
            problems.append(
                f"eval_approximate must be hnsw, ivf or none, got {self.eval_approximate!r}"
            )
        if self.snapshots not in ("auto", "on", "off"):
            problems.append(f"snapshots must be auto, on or off, got {self.snapshots!r}")
        if not self.eval_ks or min(self.eval_ks) < 1:
            problems.append(f"eval_ks must be positive integers, got {self.eval_ks}")
        selectable = selectable_metrics(self.eval_ks)
        if self.best_metric not in selectable:
            problems.append(
                f"best_metric must be one of {', '.join(selectable)}, got {self.best_metric!r}"
            )
        problems += self._runtime_problems()
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            problems.append(f"device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

    def _runtime_problems(self) -> list[str]:
        """Values only training itself would trip over, after the run folder exists (issue 27)."""
        problems = []
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            problems.append(
                f"max_steps_per_epoch must be at least 1, got {self.max_steps_per_epoch}"
            )
        if self.eval_batch_size < 1 or self.num_workers < 0:
            problems.append("eval_batch_size must be at least 1 and num_workers at least 0")
        if not 0 <= self.seed < 2**32:  # numpy's global seed takes 0 … 2³² − 1
            problems.append(f"seed must be in 0 … {2**32 - 1}, got {self.seed}")
        rates = {"lr": self.lr, "weight_decay": self.weight_decay, "momentum": self.momentum}
        rates |= {"loss_lr": 0.0 if self.loss_lr is None else self.loss_lr}
        rates |= {"early_stop_min_delta": self.early_stop_min_delta}
        for name, value in rates.items():
            if not 0 <= value < float("inf"):  # NaN fails too
                problems.append(f"{name} must be a finite number >= 0, got {value}")
        if not 0 < self.lr_gamma < float("inf"):
            problems.append(f"lr_gamma must be a finite number > 0, got {self.lr_gamma}")
        return problems

    def save(self, path: str | Path) -> None:
        from dml_core.io import atomic_write_json

        atomic_write_json(path, self.to_dict())


SELECTABLE_METRICS = (
    "map@r",
    "r_precision",
    "map_c",
    "nmi",
    "f1",
    "rho@1",
    "rho@2",
    "pi_intra",
    "pi_inter",
    "pi_ratio",
    "uniformity",
)
"""The metrics an evaluation gives on the selection split besides Recall@k (``retrieval_metrics``,
``embedding_space_metrics``; tests/test_trainer.py checks the two lists agree)."""


def selectable_metrics(eval_ks: list[int]) -> list[str]:
    """The names ``best_metric`` may take: ``recall@k`` for each k of ``eval_ks``, then the rest."""
    return [f"recall@{k}" for k in eval_ks] + list(SELECTABLE_METRICS)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _checked_value(base: Any, value: Any) -> tuple[bool, Any]:
    """(whether ``value`` fits the field type ``base``, the value to keep): a number may come as a
    string that reads as one (YAML 1.1 reads ``1e-3`` as a string)."""
    if base is float and isinstance(value, str):
        try:
            return True, float(value)
        except ValueError:
            return False, value
    fits = {
        bool: lambda: isinstance(value, bool),
        int: lambda: _is_int(value),
        float: lambda: _is_int(value) or isinstance(value, float),
        str: lambda: isinstance(value, str),
    }.get(base)
    if fits is not None:
        return fits(), value
    if typing.get_origin(base) is list:
        return isinstance(value, list) and all(_is_int(k) for k in value), value
    if typing.get_origin(base) is dict:
        return isinstance(value, dict), value
    return True, value


EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def checked_fields(values: dict[str, Any], source: str) -> dict[str, Any]:
    """``values`` with every key a TrainConfig field and every value of its field's type (numeric
    strings become numbers); otherwise one ``ValueError`` that starts with ``source``."""
    hints = typing.get_type_hints(TrainConfig)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ValueError(
            f"{source}: unknown key(s) {unknown}; valid keys: {', '.join(sorted(hints))}"
        )
    checked = {}
    for name, value in values.items():
        optional = _base_type(hints[name]) is not hints[name]
        if value is None and optional:
            checked[name] = None
            continue
        base = _base_type(hints[name])
        fits, checked[name] = _checked_value(base, value)
        if not fits:
            origin = typing.get_origin(base)
            expected = {list: "a list of integers", dict: "a mapping"}.get(origin) or EXPECTED[base]
            none = " or null" if optional else ""
            raise ValueError(f"{source}: {name} must be {expected}{none}, got {value!r}")
    return checked


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML file of TrainConfig fields (types checked, see ``checked_fields``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"config file {path} is not UTF-8 text") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(error, "problem", None) or "syntax error"
            raise ValueError(f"config file {path} is not valid YAML{where}: {problem}") from None
    else:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"config file {path} is not valid JSON at line {error.lineno}, column "
                f"{error.colno}: {error.msg}"
            ) from None
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping of TrainConfig fields")
    return checked_fields(values, f"config file {path}")


# --- command-line flags, one per field -----------------------------------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(annotation: Any) -> Any:
    """The non-None member of ``X | None``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def _parse_mapping(text: str) -> dict[str, Any]:
    """``'{"a": 1}'`` (JSON) or ``a=1,b=x`` (values parsed as JSON where possible)."""
    text = text.strip()
    if text.startswith("{"):
        return json.loads(text)
    mapping: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        if "=" not in item:
            raise argparse.ArgumentTypeError(f"expected key=value pairs or JSON, got {text!r}")
        key, value = item.split("=", 1)
        try:
            mapping[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            mapping[key.strip()] = value
    return mapping


def _optional(parse: Any) -> Any:
    return lambda text: None if text.lower() in ("none", "null") else parse(text)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; absent flags leave no attribute, so only explicit ones override."""
    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("TrainConfig fields")
    for f in dataclasses.fields(TrainConfig):
        annotation = hints[f.name]
        base = _base_type(annotation)
        optional = base is not annotation
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "dest": f.name}
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(base) is dict:
            kwargs["type"] = _parse_mapping
            kwargs["metavar"] = "K=V,…"
        elif typing.get_origin(base) is list:
            kwargs["type"] = int
            kwargs["nargs"] = "*"
        else:
            kwargs["type"] = _optional(base) if optional else base
        group.add_argument(_flag(f.name), **kwargs)
