"""``TrainConfig``: every hyper-parameter of a run, its presets, and JSON/YAML/CLI round trips.

Precedence when a run is configured: dataclass defaults < ``--preset`` < ``--config FILE`` < explicit flags.
The defaults are the paper's fair protocol (Roth et al. 2020, §4 / DESIGN.md §5) with the margin loss.
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

PAPER_DATASETS = {"cub200": 150, "cars196": 150, "sop": 100}
"""Epochs of the paper's protocol per dataset."""

PAPER_PUSH_PROBABILITY = {"cub200": 0.35, "cars196": 0.35, "sop": 0.15}
"""The official code's ρ (rho_distance) push probabilities per dataset."""

TRIPLET_MINER_LOSSES = ("margin", "triplet", "contrastive", "snr", "quadruplet")
OTHER_LOSSES = (
    "multisimilarity",
    "lifted",
    "npair",
    "angular",
    "proxynca",
    "softmax",
    "arcface",
    "softtriple",
    "histogram",
)
LOSS_MINER = {"npair": "npair", "angular": "npair", "lifted": "lifted"}
"""Which miner each non-triplet loss takes under the paper's protocol (absent: none)."""


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


def _paper_preset(dataset: str, loss: str, push_probability: float = 0.0) -> dict[str, Any]:
    """DESIGN.md §5: ResNet50 (frozen BN), 128-d, Adam 1e-5, wd 4e-4, batch 112, 2 per class."""
    return {
        "dataset": dataset,
        "arch": "resnet50",
        "pretrained": "imagenet",
        "frozen_bn": True,
        "embed_dim": 128,
        "loss": loss,
        "miner": "distance" if loss in TRIPLET_MINER_LOSSES else LOSS_MINER.get(loss),
        "rho": push_probability,
        "sampler": "class_random",
        "samples_per_class": 2,
        "batch_size": 112,
        "epochs": PAPER_DATASETS[dataset],
        "optimizer": "adam",
        "lr": 1e-5,
        "weight_decay": 4e-4,
        "num_workers": 8,
        "image_size": 224,
    }


def _build_presets() -> dict[str, dict[str, Any]]:
    presets: dict[str, dict[str, Any]] = {
        "glyphs": {
            "dataset": "glyphs",
            "arch": "small_cnn",
            "pretrained": None,
            "frozen_bn": False,
            "embed_dim": 128,
            "loss": "margin",
            "miner": "distance",
            "sampler": "class_random",
            "samples_per_class": 2,
            "batch_size": 112,
            "epochs": 8,
            "eval_every": 2,
            "optimizer": "adam",
            "lr": 1e-3,
            "weight_decay": 4e-4,
            "num_workers": 0,
            "val_classes": 0.0,
        },
        # The paper's toy as published (its base run): every triplet of a random batch of 24,
        # loss mean d(a,p) + mean relu(0.1 − d(a,n)), Adam 0.03, 200 iterations (one per epoch).
        "toy": {
            "dataset": "toy_diagonal",
            "arch": "mlp",
            "embed_dim": 2,
            "frozen_bn": False,
            "loss": "contrastive",
            "loss_options": {"pos_margin": 0.0, "neg_margin": 0.1},
            "miner": "all",
            "batch_size": 24,
            "sampler": "random",
            "samples_per_class": 1,
            "epochs": 200,
            "max_steps_per_epoch": 1,
            "eval_every": 50,
            "checkpoint_every": 50,
            "eval_ks": [1],
            "optimizer": "adam",
            "lr": 0.03,
            "weight_decay": 0.0,
            "snapshots": "off",
        },
    }
    for dataset, push in PAPER_PUSH_PROBABILITY.items():
        for loss in TRIPLET_MINER_LOSSES + OTHER_LOSSES:
            presets[f"paper-{dataset}-{loss}"] = _paper_preset(dataset, loss)
        for loss in TRIPLET_MINER_LOSSES:
            presets[f"paper-{dataset}-{loss}-rho"] = _paper_preset(dataset, loss, push)
    return presets


PRESETS = _build_presets()


def preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}")
    return dict(PRESETS[name])


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


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values: dict[str, Any] = {}
    if getattr(args, "preset", None):
        values.update(preset(args.preset))
    if getattr(args, "config", None):
        values.update(load_config_file(args.config))
    for f in dataclasses.fields(TrainConfig):
        if hasattr(args, f.name):
            values[f.name] = getattr(args, f.name)
    return TrainConfig.from_dict(values)
