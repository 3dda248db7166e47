"""``TrainConfig``: every hyper-parameter of a run, its presets, and JSON/YAML/CLI round trips.

Precedence when a run is configured: dataclass defaults < ``--preset`` < ``--config FILE`` < explicit flags.
The defaults are the paper's fair protocol (Roth et al. 2020, §4 / docs/DESIGN.md §5) with the margin loss.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
    """Learning rate of the loss's own parameters (β, proxies); None: the loss's default."""
    scheduler: str = "none"
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.3
    max_steps_per_epoch: int | None = None
    # evaluation and logging
    eval_every: int = 1
    eval_batch_size: int = 256
    eval_ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    best_metric: str = "recall@1"
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
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(
                f"unknown config key(s) {unknown}; valid keys: {', '.join(sorted(names))}"
            )
        config = cls(**values)
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
        if self.snapshots not in ("auto", "on", "off"):
            problems.append(f"snapshots must be auto, on or off, got {self.snapshots!r}")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

    def save(self, path: str | Path) -> None:
        from dml_core.io import atomic_write_json

        atomic_write_json(path, self.to_dict())


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML file of TrainConfig fields."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        values = yaml.safe_load(text) or {}
    else:
        values = json.loads(text)
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping of TrainConfig fields")
    return values


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
