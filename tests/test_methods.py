"""Method compatibility (dml_core.methods): the loss × miner × ρ table, defaults and messages."""

from __future__ import annotations

import pytest

from dml_core.losses import LOSSES
from dml_core.methods import check_method, default_miner
from dml_core.miners import MINERS, build_miner, miners_of_kind

TRIPLET_MINERS = ["all", "distance", "random", "semihard", "softhard"]
NO_MINER = ["arcface", "histogram", "multisimilarity", "proxynca", "softmax", "softtriple"]


def test_default_miner_of_every_loss():
    defaults = {name: default_miner(name) for name in LOSSES}
    assert defaults == {
        "triplet": "distance", "margin": "distance", "contrastive": "distance", "snr": "distance",
        "quadruplet": "distance", "npair": "npair", "angular": "npair", "lifted": "lifted",
        **dict.fromkeys(NO_MINER),
    }  # fmt: skip
    assert miners_of_kind("triplet") == TRIPLET_MINERS


def test_compatibility_table():
    """Every loss × miner × ρ: allowed exactly when the miner gives the loss's tuples, and ρ only
    with a triplet miner; the default miner always fits."""
    for loss, loss_class in LOSSES.items():
        for miner in [None, *MINERS]:
            gives = None if miner is None else MINERS[miner].kind
            for rho in (0.0, 0.3):
                fits = gives == loss_class.miner_kind and (rho == 0 or gives == "triplet")
                if fits:
                    check_method(loss, miner, rho)
                else:
                    with pytest.raises(ValueError):
                        check_method(loss, miner, rho)
        check_method(loss, default_miner(loss), 0.0)


def test_miner_none_with_rho_says_what_is_wrong():
    with pytest.raises(ValueError) as error:
        check_method("margin", None, 0.3)
    assert str(error.value) == (
        "margin needs triplet tuples from a miner (all, distance, random, semihard, softhard) "
        "and --rho 0.3 wraps that miner, but --miner none gives no tuples"
    )


@pytest.mark.parametrize(
    ("loss", "miner", "rho", "message"),
    [
        ("margin", None, 0.0, "margin needs triplet tuples from a miner: one of all, distance, "),
        ("npair", "distance", 0.0, "npair needs npair tuples (miners: npair), but 'distance' gives"),
        ("lifted", "semihard", 0.0, "lifted needs lifted tuples (miners: lifted), but 'semihard'"),
        ("margin", "npair", 0.0, "margin needs triplet tuples (miners: all, distance, random, "),
        ("multisimilarity", "distance", 0.0, "multisimilarity mines its pairs internally and "
         "takes no miner; use --miner none"),
        ("multisimilarity", None, 0.4, "multisimilarity mines its pairs internally and cannot "
         "take --rho"),
        ("softmax", None, 0.2, "softmax classifies against learned class weights and cannot take"),
        ("npair", "npair", 0.2, "--rho needs a triplet-based loss such as margin, not npair"),
        ("margin", "distance", 1.5, "rho must be a probability in [0, 1], got 1.5"),
        ("margn", "distance", 0.0, "unknown loss 'margn'; valid names: angular, arcface, "),
        ("margin", "hardest", 0.0, "unknown miner 'hardest'; valid names: all, distance, "),
    ],
)  # fmt: skip
def test_messages(loss, miner, rho, message):
    with pytest.raises(ValueError) as error:
        check_method(loss, miner, rho)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_methods_and_the_rho_wrapper_agree():
    """What check_method allows, build_miner builds; a miner the ρ wrapper refuses is refused by
    check_method with every loss; both refuse an out-of-range ρ with the same line."""
    for miner in MINERS:
        try:
            build_miner(miner, rho=0.3, seed=0)
            wraps = True
        except ValueError as error:
            assert str(error).startswith("ρ-regularization needs a triplet miner (all, distance, ")
            wraps = False
        allowed = []
        for loss in LOSSES:
            try:
                check_method(loss, miner, 0.3)
                allowed.append(loss)
            except ValueError:
                pass
        assert bool(allowed) == wraps, miner
    for rho in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError) as by_method:
            check_method("margin", "distance", rho)
        with pytest.raises(ValueError) as by_miner:
            build_miner("distance", rho=rho)
        expected = f"rho must be a probability in [0, 1], got {rho}"
        assert str(by_method.value) == str(by_miner.value) == expected
