"""Losses, registry ``LOSSES``: ``build_loss(name, num_classes=…, embed_dim=…, **hparams)``.

Each module holds one loss family; ``check_compatible`` says whether a loss and a miner fit.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from dml_core.losses import (
    contrastive,
    histogram,
    lifted,
    margin,
    multisimilarity,
    npair,
    proxy,
    snr,
    softmax,
    triplet,
)
from dml_core.losses.base import LOSSES, DMLLoss

if TYPE_CHECKING:
    from dml_core.miners.base import Miner

__all__ = [
    "LOSSES",
    "DMLLoss",
    "build_loss",
    "check_compatible",
    "contrastive",
    "histogram",
    "lifted",
    "margin",
    "multisimilarity",
    "npair",
    "proxy",
    "snr",
    "softmax",
    "triplet",
]


def accepted_hparams(cls: type) -> list[str]:
    """The keyword hyper-parameters a loss or miner class's ``__init__`` names explicitly."""
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for parameter in inspect.signature(init).parameters.values():
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.name not in names:
                names.append(parameter.name)
    return names


def check_hparams(kind: str, name: str, cls: type, hparams: dict[str, Any]) -> None:
    """ValueError naming the valid hyper-parameters when ``hparams`` has an unknown one."""
    valid = accepted_hparams(cls)
    unknown = sorted(set(hparams) - set(valid))
    if unknown:
        raise ValueError(
            f"{kind} {name!r} has no hyper-parameter {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(valid))}"
        )


def build_loss(
    name: str, *, num_classes: int | None = None, embed_dim: int | None = None, **hparams: Any
) -> DMLLoss:
    """The loss registered as ``name`` with the paper code's defaults overridden by ``hparams``."""
    cls = LOSSES[name]
    check_hparams("loss", name, cls, hparams)
    return cls(num_classes=num_classes, embed_dim=embed_dim, **hparams)


def check_compatible(loss: DMLLoss, miner: Miner | None, *, rho: float = 0.0) -> None:
    """ValueError with a clear message when ``miner`` (and ρ) cannot feed ``loss``.

    A loss without ``miner_kind`` takes no miner and no ρ; a tuple loss needs a miner of its
    kind (triplet losses: random, semihard, softhard, distance; npair/angular: npair; lifted: lifted).
    ``rho`` is for callers that hold no miner; a ρ-wrapped miner reports its own ``rho``.
    """
    from dml_core.miners import MINERS

    rho = max(rho, getattr(miner, "rho", 0.0))
    if loss.miner_kind is None:
        if rho > 0:
            raise ValueError(
                f"{loss.name} {loss.without_miner_reason} and cannot take --rho; "
                "use a triplet-based loss such as margin"
            )
        if miner is not None:
            raise ValueError(f"{loss.name} {loss.without_miner_reason} and takes no miner")
        return
    fitting = sorted(n for n, cls in MINERS.items() if cls.kind == loss.miner_kind)
    if miner is None:
        raise ValueError(
            f"{loss.name} needs {loss.miner_kind} tuples from a miner: one of {', '.join(fitting)}"
        )
    if miner.kind != loss.miner_kind:
        raise ValueError(
            f"{loss.name} needs {loss.miner_kind} tuples (miners: {', '.join(fitting)}), "
            f"but {miner.name!r} gives {miner.kind} tuples"
        )
    if rho > 0 and not loss.accepts_rho:
        raise ValueError(f"--rho needs a triplet-based loss such as margin, not {loss.name}")
