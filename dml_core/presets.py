"""Presets (``--preset NAME``) and how a run's configuration is resolved from them.

Precedence: dataclass defaults < ``--preset`` < ``--config FILE`` < explicit flags. The ``paper-*``
presets follow the paper's protocol (docs/DESIGN.md §5); which miner each loss takes comes from
:mod:`dml_core.methods`, the one place that knows. ``glyphs-finetune`` fine-tunes the glyph
backbone the way the paper fine-tunes ResNet50; ``glyphs`` trains the same network from scratch.
All but ``toy`` compute ρ@k on the official code's d − 1 singular values.

This module imports no torch (``python -m dml_core --help`` lists the presets): the loss names and
their miners are written out in ``PAPER_MINERS``; tests/test_presets.py checks them against the
loss registry and :func:`dml_core.methods.default_miner`.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from dml_core.config import TrainConfig, load_config_file

PAPER_DATASETS = {"cub200": 150, "cars196": 150, "sop": 100}
"""Epochs of the paper's protocol per dataset."""

PAPER_MINERS: dict[str, str | None] = {
    **dict.fromkeys(("contrastive", "margin", "quadruplet", "snr", "triplet"), "distance"),
    "angular": "npair",
    "npair": "npair",
    "lifted": "lifted",
    **dict.fromkeys(
        ("arcface", "histogram", "multisimilarity", "proxynca", "softmax", "softtriple"), None
    ),
}
"""Every registered loss and its miner under the paper's protocol (``methods.default_miner``),
written out so that the presets need no torch; "distance" marks the triplet losses ρ applies to."""

OFFICIAL_PUSH_PROBABILITIES: tuple[tuple[str, str, float | None, float], ...] = (
    ("cub200", "margin", 1.2, 0.35),  # --group CUBreg_Margin_b12_Distance_3
    ("cub200", "margin", 0.6, 0.4),  # CUBreg_Margin_b06_Distance, --loss_margin_beta 0.6
    ("cub200", "triplet", None, 0.4),  # CUBreg_Triplet_Distance_3
    ("cub200", "contrastive", None, 0.4),  # CUBreg_Contrastive
    ("cub200", "snr", None, 0.3),  # CUBreg_SNR_Distance _3
    ("cars196", "margin", 1.2, 0.35),  # CARreg_Margin_b12_Distance
    ("cars196", "margin", 0.6, 0.35),  # CARreg_Margin_b06_Distance
    ("cars196", "triplet", None, 0.35),  # CARreg_Triplet_Distance
    ("cars196", "contrastive", None, 0.35),  # CARreg_Contrastive
    ("cars196", "snr", None, 0.35),  # CARreg_SNR_Distance
    ("sop", "margin", 1.2, 0.15),  # SOPreg_Margin_b12_Distance
    ("sop", "margin", 0.6, 0.15),  # SOPreg_Margin_b06_Distance
    ("sop", "triplet", None, 0.15),  # SOPreg_Triplet_Distance
    ("sop", "contrastive", None, 0.15),  # SOPreg_Contrastive
    ("sop", "snr", None, 0.15),  # SOPreg_SNR_Distance
)
"""(dataset, loss, margin's initial β or None, push probability) of every ρ-regularized run of the
official sample-run script of Roth et al. (2020): Confusezius/Revisiting_Deep_Metric_Learning_PyTorch,
``ICML2020_RevisitDML_SampleRuns.sh`` (later ``Sample_Runs/``), its "Specturm-Regularized Ranking
Losses" sections, ``--batch_mining rho_distance --miner_rho_distance_cp P``. The script has no
ρ-regularized quadruplet run, so there is no ``paper-*-quadruplet-rho`` preset."""

PAPER_PUSH_PROBABILITY = {
    (dataset, loss): push
    for dataset, loss, beta, push in OFFICIAL_PUSH_PROBABILITIES
    if beta in (None, 1.2)  # margin's default β 1.2; the other losses have none
}
"""The official push probability of each (dataset, loss) at the losses' default options."""

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
        "miner": PAPER_MINERS[loss],
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
        # the study's stopping rule and selection on validation MAP@R; the epoch cap, evaluation
        # interval and stopping rule match studies/glyphs-finetune.yaml (a test checks).
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
            "epochs": 40,
            "eval_every": 1,
            "optimizer": "adam",
            "lr": 1e-4,
            "weight_decay": 4e-4,
            "num_workers": 0,
            "val_classes": 0.2,
            "best_metric": "map@r",
            "early_stop": True,
            "early_stop_min_epochs": 8,
            "early_stop_min_delta": 0.0076,
            "early_stop_from_recovery": True,
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
    for dataset in PAPER_DATASETS:
        for loss in sorted(PAPER_MINERS):
            presets[f"paper-{dataset}-{loss}"] = _paper_preset(dataset, loss)
    for (dataset, loss), push in PAPER_PUSH_PROBABILITY.items():
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
