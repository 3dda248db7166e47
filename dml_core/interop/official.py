"""The paper's official code (Roth et al. 2020, ``parameters.py``): its ``opt`` → this project's config.

Every ``opt`` field with a counterpart is mapped (``OPT_FIELDS``, ``LOSS_OPTIONS``, the miner
below); the whole ``opt`` is kept under ``source.opt`` by the importer, and fields whose *value*
has no counterpart (a loss or miner this project lacks) are listed in ``unmapped``.

- ``batch_mining``: ``distance`` → miner ``distance``; ``rho_distance`` → miner ``distance`` with
  ρ = ``miner_rho_distance_cp`` (the push probability); the lower cut-off of either →
  ``miner_options.lower_cutoff``; other names kept when registered here.
- ``loss_<loss>_<option>`` → ``loss_options`` of the run's loss; the absolute learning rates of the
  loss's own parameters (``loss_margin_beta_lr``, ``loss_softmax_lr``, ``loss_arcface_lr``) →
  ``loss_lr``.
- ``use_tv_split`` by classes (``tv_split_by_samples`` unset) → ``val_classes = 1 − tv_split_perc``;
  ``storage_metrics`` ``e_recall@k`` → ``best_metric recall@k``; ``scheduler step`` with ``tau``,
  ``gamma`` → ``lr_milestones``, ``lr_gamma``.
"""

from __future__ import annotations

from typing import Any

from dml_core.config import TrainConfig
from dml_core.losses import LOSSES
from dml_core.methods import default_miner
from dml_core.miners import MINERS
from dml_core.models import EmbeddingModel
from dml_core.presets import PRESETS
from dml_core.samplers import SAMPLERS

OFFICIAL_DATASETS = {"cub200": "cub200", "cars196": "cars196", "online_products": "sop"}
"""Dataset names of the official code → this project's."""
OFFICIAL_LOSSES = {"softtriplet": "softtriple"}
"""Official loss names that differ from this project's (the others are the same)."""

OPT_FIELDS = (
    # (TrainConfig field, opt field, type)
    ("seed", "seed", int),
    ("batch_size", "bs", int),
    ("epochs", "n_epochs", int),
    ("samples_per_class", "samples_per_class", int),
    ("num_workers", "kernels", int),
    ("lr", "lr", float),
    ("weight_decay", "decay", float),
    ("lr_gamma", "gamma", float),
    ("data_root", "source_path", str),
)

LOSS_OPTIONS: dict[str, dict[str, str]] = {
    # this project's loss → {official opt field: loss option}
    "margin": {"loss_margin_margin": "margin", "loss_margin_beta": "beta"},
    "triplet": {"loss_triplet_margin": "margin"},
    "contrastive": {
        "loss_contrastive_pos_margin": "pos_margin",
        "loss_contrastive_neg_margin": "neg_margin",
    },
    "multisimilarity": {
        "loss_multisimilarity_pos_weight": "alpha",
        "loss_multisimilarity_neg_weight": "beta",
        "loss_multisimilarity_margin": "mining_margin",
        "loss_multisimilarity_thresh": "base",
    },
    "lifted": {"loss_lifted_neg_margin": "margin", "loss_lifted_l2": "l2_weight"},
    "npair": {"loss_npair_l2": "l2_weight"},
    "angular": {
        "loss_angular_alpha": "alpha_degrees",
        "loss_angular_npair_ang_weight": "angular_weight",
        "loss_angular_npair_l2": "l2_weight",
    },
    "quadruplet": {
        "loss_quadruplet_margin_alpha_1": "margin_triplet",
        "loss_quadruplet_margin_alpha_2": "margin_quadruplet",
    },
    "softtriple": {
        "loss_softtriplet_n_centroids": "centers_per_class",
        "loss_softtriplet_margin_delta": "margin",
        "loss_softtriplet_gamma": "gamma",
        "loss_softtriplet_lambda": "la",
        "loss_softtriplet_reg_weight": "reg_weight",
        "loss_softtriplet_lrmulti": "center_lr_multiplier",
    },
    "softmax": {"loss_softmax_temperature": "temperature"},
    "arcface": {"loss_arcface_angular_margin": "margin", "loss_arcface_feature_scale": "scale"},
    "proxynca": {"loss_proxynca_lrmulti": "proxy_lr_multiplier"},
    "snr": {"loss_snr_margin": "margin"},
    "histogram": {"loss_histogram_nbins": "num_bins"},
}
"""``snr``'s ``loss_snr_reg_lambda`` is left out on purpose: this project's SNR applies the official
code's rule (no regulariser under plain distance mining) only while ``reg_lambda`` is unset."""

LOSS_LR = {
    "margin": "loss_margin_beta_lr",
    "softmax": "loss_softmax_lr",
    "arcface": "loss_arcface_lr",
}
"""Losses whose own parameters the official code trains at an absolute learning rate."""


def _number(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if kind is int else isinstance(value, int | float)


def official_model_options(opt: dict[str, Any], arch: str | None) -> dict[str, Any]:
    """``build_model`` options from the official ``opt.arch`` (``resnet50_frozen_normalize``)."""
    official_arch = str(opt.get("arch", ""))
    if not official_arch.startswith("resnet50"):
        raise ValueError(
            f"official checkpoint of arch {official_arch!r}: only ResNet50 ('resnet50…') maps "
            "onto this project's architectures"
        )
    if arch not in (None, "resnet50"):
        raise ValueError(f"the official checkpoint is a ResNet50, not {arch!r}")
    return {
        "arch": "resnet50",
        "normalize": "normalize" in official_arch,
        "frozen_bn": "frozen" in official_arch,
    }


def _method_values(opt: dict[str, Any], loss: str, unmapped: dict[str, Any]) -> dict[str, Any]:
    """Loss, its options and learning rate, miner, its options and ρ."""
    values: dict[str, Any] = {"loss": loss}
    options = {
        ours: opt[theirs]
        for theirs, ours in LOSS_OPTIONS.get(loss, {}).items()
        if _number(opt.get(theirs), float)
    }
    values["loss_options"] = options
    if _number(opt.get(LOSS_LR.get(loss, "")), float):
        values["loss_lr"] = float(opt[LOSS_LR[loss]])
    if default_miner(loss) is None:
        values.update(miner=None, rho=0.0)
        return values
    mining = str(opt.get("batch_mining", ""))
    values["rho"] = 0.0
    if mining == "rho_distance":
        values["miner"] = "distance"
        cutoff = opt.get("miner_rho_distance_lower_cutoff")
        if _number(opt.get("miner_rho_distance_cp"), float):
            values["rho"] = float(opt["miner_rho_distance_cp"])
    else:
        cutoff = opt.get("miner_distance_lower_cutoff")
        if mining in MINERS:
            values["miner"] = mining
        elif mining:
            unmapped["batch_mining"] = mining
    if values.get("miner") == "distance" and _number(cutoff, float):
        values["miner_options"] = {"lower_cutoff": float(cutoff)}
    return values


def official_config_values(opt: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(TrainConfig values, the ``opt`` fields whose values have no counterpart here).

    Starts from the ``paper-<dataset>-<loss>`` preset (ResNet50, its image size) and overrides it
    with every field of ``opt`` that maps (module docstring)."""
    unmapped: dict[str, Any] = {}
    dataset = OFFICIAL_DATASETS.get(str(opt.get("dataset")), "imagefolder")
    if str(opt.get("dataset")) not in OFFICIAL_DATASETS:
        unmapped["dataset"] = opt.get("dataset")
    loss = OFFICIAL_LOSSES.get(str(opt.get("loss")), str(opt.get("loss")))
    values = dict(PRESETS.get(f"paper-{dataset}-{loss}", {"dataset": dataset, "image_size": 224}))
    if loss in LOSSES:
        values.update(_method_values(opt, loss, unmapped))
    else:
        unmapped["loss"] = opt.get("loss")
    for ours, theirs, kind in OPT_FIELDS:
        value = opt.get(theirs)
        if kind is str and isinstance(value, str):
            values[ours] = value
        elif kind is not str and _number(value, kind) and value >= (0 if ours == "seed" else 1e-12):
            values[ours] = kind(value)
    if opt.get("optim") in ("adam", "sgd"):
        values["optimizer"] = opt["optim"]
    if opt.get("data_sampler") in SAMPLERS:
        values["sampler"] = opt["data_sampler"]
    elif opt.get("data_sampler") is not None:
        unmapped["data_sampler"] = opt["data_sampler"]
    if opt.get("scheduler") == "step" and isinstance(opt.get("tau"), list | tuple):
        values.update(scheduler="step", lr_milestones=[int(t) for t in opt["tau"]])
    by_classes = opt.get("use_tv_split") is True and not opt.get("tv_split_by_samples")
    if by_classes and _number(opt.get("tv_split_perc"), float) and 0 < opt["tv_split_perc"] < 1:
        values["val_classes"] = round(1.0 - float(opt["tv_split_perc"]), 6)
    storage = opt.get("storage_metrics")
    recall_k = (
        str(storage[0]).removeprefix("e_recall@") if isinstance(storage, list | tuple) else ""
    )
    if (
        storage
        and str(storage[0]).startswith("e_recall@")
        and recall_k.isdigit()
        and int(recall_k) >= 1
    ):
        k = int(recall_k)
        values["eval_ks"] = sorted({*values.get("eval_ks", [1, 2, 4, 8]), k})
        values["best_metric"] = f"recall@{k}"
    return values, unmapped


def official_config(
    opt: dict[str, Any], model: EmbeddingModel
) -> tuple[TrainConfig, dict[str, Any]]:
    """The closest TrainConfig (the model's own settings win), and the unmapped fields."""
    values, unmapped = official_config_values(opt)
    values.update(model.config(), pretrained=None)
    values.pop("in_channels")
    return TrainConfig.from_dict(values), unmapped
