"""Method compatibility: which loss takes which miner, the ρ rule and each loss's default miner.

A loss declares the tuples it consumes (``DMLLoss.miner_kind``: "triplet", "npair", "lifted", or
None when it uses all pairs, mines internally or compares with learned proxies); a miner declares
the tuples it gives (``Miner.kind``). The rules, in the order they are checked:

1. a loss without ``miner_kind`` takes no miner and no ρ;
2. a tuple loss needs a miner whose ``kind`` is its ``miner_kind``;
3. ρ-regularization (Roth et al. 2020, §5) swaps rows of a triplet miner, so ρ > 0 needs a
   triplet miner, hence a triplet loss.

The default miner is the one of the paper's protocol: distance-weighted sampling for triplet losses,
``npair`` for npair/angular, ``lifted`` for lifted. Config, engine and CLI all ask this module.
ρ's own preconditions stay where ρ is applied, ``dml_core.miners.rho``: its range (this module asks
``check_push_probability`` first) and the wrapped miner's kind (for direct ``build_miner`` use).
"""

from __future__ import annotations

from dml_core.losses import LOSSES
from dml_core.miners import MINERS, miners_of_kind
from dml_core.miners.rho import check_push_probability

DEFAULT_MINER_OF_KIND = {"triplet": "distance", "npair": "npair", "lifted": "lifted"}
"""The paper protocol's miner for each tuple kind a loss can consume."""


def default_miner(loss: str) -> str | None:
    """The miner ``loss`` takes under the paper's protocol; None when it takes no miner."""
    kind = LOSSES[loss].miner_kind
    return None if kind is None else DEFAULT_MINER_OF_KIND[kind]


def check_method(loss: str, miner: str | None, rho: float = 0.0) -> None:
    """ValueError, one line saying what is wrong, unless loss ``loss`` can train with miner
    ``miner`` (None: ``--miner none``) and push probability ``rho``: the rules of the module
    docstring, in its order. Unknown names list the valid ones."""
    check_push_probability(rho)
    loss_class = LOSSES[loss]
    wanted, reason = loss_class.miner_kind, loss_class.without_miner_reason
    given = None if miner is None else MINERS[miner].kind
    if wanted is None:
        if rho > 0:
            raise ValueError(
                f"{loss} {reason} and cannot take --rho (ρ swaps rows of a triplet miner); "
                "use a triplet-based loss such as margin"
            )
        if miner is not None:
            raise ValueError(f"{loss} {reason} and takes no miner; use --miner none")
        return
    fitting = ", ".join(miners_of_kind(wanted))
    if miner is None:
        if rho > 0:
            raise ValueError(
                f"{loss} needs {wanted} tuples from a miner ({fitting}) and --rho {rho} wraps "
                "that miner, but --miner none gives no tuples"
            )
        raise ValueError(f"{loss} needs {wanted} tuples from a miner: one of {fitting}")
    if given != wanted:
        raise ValueError(
            f"{loss} needs {wanted} tuples (miners: {fitting}), but {miner!r} gives {given} tuples"
        )
    if rho > 0 and wanted != "triplet":
        raise ValueError(f"--rho needs a triplet-based loss such as margin, not {loss}")
