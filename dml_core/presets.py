"""Presets (``--preset NAME``) and how a run's configuration is resolved from them.

Precedence: dataclass defaults < ``--preset`` < ``--config FILE`` < explicit flags. The ``paper-*``
presets follow the paper's protocol (docs/DESIGN.md §5); which miner each loss takes comes from
:mod:`dml_core.methods`, the one place that knows. ``glyphs-finetune`` fine-tunes the glyph
backbone the way the paper fine-tunes ResNet50; ``glyphs`` trains the same network from scratch.
All but ``toy`` compute ρ@k on the official code's d − 1 singular values.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from dml_core.config import TrainConfig, load_config_file
from dml_core.methods import OTHER_LOSSES, TRIPLET_MINER_LOSSES, default_miner

PAPER_DATASETS = {"cub200": 150, "cars196": 150, "sop": 100}
"""Epochs of the paper's protocol per dataset."""

PAPER_PUSH_PROBABILITY = {"cub200": 0.35, "cars196": 0.35, "sop": 0.15}
"""The official code's ρ (rho_distance) push probabilities per dataset."""

GLYPHS_BACKBONE = (
    Path(__file__).resolve().parents[1] / "checkpoints" / "glyphs-backbone.safetensors"
)
"""The small CNN pretrained on glyph classes disjoint from the benchmark's (absolute, so the
preset works from any directory)."""
GLYPHS_BACKBONE_COMMAND = (
    "python scripts/pretrain_glyphs_backbone.py --out checkpoints/glyphs-backbone.safetensors"
)


def _paper_preset(dataset: str, loss: str, push_probability: float = 0.0) -> dict[str, Any]:
    """docs/DESIGN.md §5: ResNet50 (frozen BN), 128-d, Adam 1e-5, wd 4e-4, batch 112, 2 per class."""
    return {
        "dataset": dataset,
        "arch": "resnet50",
        "pretrained": "imagenet",
        "frozen_bn": True,
        "embed_dim": 128,
        "loss": loss,
        "miner": default_miner(loss),
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
        "rho_spectrum": "official",
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
            "rho_spectrum": "official",
        },
        # Fine-tuning as the paper fine-tunes ResNet50 (frozen BatchNorm, small learning rate,
        # loss-parameter rates relative to it), with 20 % of the train classes for validation,
        # the study's stopping rule and selection on validation MAP@R; the epoch cap and
        # evaluation interval match scripts/glyphs_study.py (regime "finetune").
        "glyphs-finetune": {
            "dataset": "glyphs",
            "arch": "small_cnn",
            "pretrained": str(GLYPHS_BACKBONE),
            "frozen_bn": True,
            "embed_dim": 128,
            "loss": "margin",
            "miner": "distance",
            "sampler": "class_random",
            "samples_per_class": 2,
            "batch_size": 112,
            "epochs": 20,
            "eval_every": 1,
            "optimizer": "adam",
            "lr": 1e-4,
            "weight_decay": 4e-4,
            "num_workers": 0,
            "val_classes": 0.2,
            "best_metric": "map@r",
            "early_stop": True,
            "early_stop_min_epochs": 8,
            "rho_spectrum": "official",
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
    """The values of preset ``name``; FileNotFoundError when it needs the glyph backbone and that
    file has not been made."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}")
    values = dict(PRESETS[name])
    if values.get("pretrained") == str(GLYPHS_BACKBONE) and not GLYPHS_BACKBONE.is_file():
        raise FileNotFoundError(
            f"preset {name!r} fine-tunes {GLYPHS_BACKBONE}, which does not exist; make it with "
            f"`{GLYPHS_BACKBONE_COMMAND}` (from the repository root)"
        )
    return values


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
