"""Miners: rows valid by labels, semi-hard/soft-hard definitions, distance weighting (χ² test),
npair/lifted row sets, ρ-regularization, reproducibility and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from dml_core.miners import RhoRegularizedMiner, build_miner
from dml_core.miners.distance import log_inverse_sphere_density

PER_ANCHOR_MINERS = ["distance", "random", "semihard", "softhard"]  # one row per usable anchor
OWN_MINERS = [*PER_ANCHOR_MINERS, "npair", "lifted"]


@pytest.fixture
def one_thread():
    """Many tiny calls: one intra-op thread avoids OpenMP spin on a shared, busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_batch(dim: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """5 classes of sizes 4, 3, 2, 2 and one singleton (it has no positive)."""
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4])
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(len(labels), dim, generator=generator), dim=1), labels


def distances(x: torch.Tensor) -> np.ndarray:
    x = x.double().numpy()
    return np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))


@pytest.mark.parametrize("name", PER_ANCHOR_MINERS)
def test_triplet_rows_are_valid_and_cover_anchors(name):
    x, labels = make_batch()
    y = labels.tolist()
    miner = build_miner(name, seed=0)
    rows = miner(x, labels)
    assert rows.dtype == torch.long and rows.shape[1] == 3 and rows.device == x.device
    for a, p, n in rows.tolist():
        assert a != p and y[a] == y[p] and y[n] != y[a]
    with_classmate = [i for i in range(len(y)) if y.count(y[i]) > 1]
    assert rows[:, 0].tolist() == with_classmate
    assert miner.stats["num_tuples"].item() == len(with_classmate)


@pytest.mark.parametrize("name", OWN_MINERS)
def test_no_valid_anchor_gives_empty_rows(name):
    x = F.normalize(torch.randn(5, 8), dim=1)
    rows = build_miner(name)(x, torch.arange(5))
    assert rows.shape == (0, 3) and rows.dtype == torch.long


@pytest.mark.parametrize("name", OWN_MINERS)
def test_same_seed_same_rows_and_bf16_input(name):
    x, labels = make_batch()
    first = build_miner(name, seed=3)(x, labels)
    assert torch.equal(first, build_miner(name, seed=3)(x, labels))
    generator = torch.Generator().manual_seed(3)
    assert torch.equal(first, build_miner(name, generator=generator)(x, labels))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rows = build_miner(name, seed=3)(x.bfloat16(), labels)
    assert rows.shape[1] == 3 and rows.shape[0] > 0


def test_random_miner_draws_vary_with_seed():
    x, labels = make_batch()
    draws = {tuple(build_miner("random", seed=s)(x, labels)[:, 2].tolist()) for s in range(5)}
    assert len(draws) > 1


def test_semihard_picks_semihard_negatives_when_they_exist():
    x, labels = make_batch(dim=4)
    d, y = distances(x), labels.tolist()
    seen_semihard = seen_fallback = 0
    for seed in range(20):
        for a, p, n in build_miner("semihard", margin=0.2, seed=seed)(x, labels).tolist():
            band = [j for j in range(len(y)) if y[j] != y[a] and d[a, p] < d[a, j] < d[a, p] + 0.2]
            if band:
                assert n in band
                seen_semihard += 1
            else:
                assert y[n] != y[a]
                seen_fallback += 1
    assert seen_semihard > 0 and seen_fallback > 0


def test_softhard_picks_hard_positives_and_negatives():
    x, labels = make_batch(dim=4)
    d, y = distances(x), labels.tolist()
    for seed in range(20):
        for a, p, n in build_miner("softhard", seed=seed)(x, labels).tolist():
            positives = [j for j in range(len(y)) if y[j] == y[a] and j != a]
            negatives = [j for j in range(len(y)) if y[j] != y[a]]
            hard_p = [j for j in positives if d[a, j] > min(d[a, k] for k in negatives)]
            hard_n = [j for j in negatives if d[a, j] < max(d[a, k] for k in positives)]
            assert p in (hard_p or positives) and n in (hard_n or negatives)


def expected_negative_probabilities(x, labels, anchor, cutoff=0.5):
    """The exact 1/q(d) weights over the anchor's negatives, from the formula, in float64."""
    dim, y, d = x.shape[1], labels.tolist(), distances(x)
    weights = {}
    for j in range(len(y)):
        if y[j] != y[anchor]:
            dc = max(d[anchor, j], cutoff)
            sphere = max(1.0 - dc**2 / 4.0, 1e-6)
            weights[j] = math.exp((2.0 - dim) * math.log(dc) - (dim - 3.0) / 2.0 * math.log(sphere))
    total = sum(weights.values())
    return {j: w / total for j, w in weights.items()}


def test_log_inverse_sphere_density_formula():
    d = torch.tensor([0.1, 0.5, 1.0, 1.5, 1.99], dtype=torch.float64)
    values = log_inverse_sphere_density(d, dim=7, cutoff=0.5)
    for value, distance in zip(values.tolist(), d.tolist(), strict=True):
        dc = max(distance, 0.5)
        expected = -5.0 * math.log(dc) - 2.0 * math.log(1 - dc**2 / 4)
        assert value == pytest.approx(expected, rel=1e-12)


def test_distance_weighted_draws_follow_inverse_density(one_thread):
    """χ² goodness of fit of the drawn negatives of two anchors against 1/q(d) with the cut-off."""
    generator = torch.Generator().manual_seed(4)
    labels = torch.arange(10).repeat_interleave(2)
    # 5-d points with a spread of distances, some of them below the 0.5 cut-off
    x = F.normalize(torch.randn(20, 5, generator=generator), dim=1)
    x[2] = F.normalize(x[0] + 0.15 * torch.randn(5, generator=generator), dim=0)
    miner = build_miner("distance", seed=11)
    draws = 4000
    counts: dict[int, dict[int, int]] = {0: {}, 5: {}}
    negatives = torch.stack([miner(x, labels)[list(counts), 2] for _ in range(draws)])
    for anchor, column in zip(counts, negatives.T.tolist(), strict=True):
        for negative in column:
            counts[anchor][negative] = counts[anchor].get(negative, 0) + 1
    assert distances(x)[0, 2] < 0.5
    for anchor, observed in counts.items():
        probabilities = expected_negative_probabilities(x, labels, anchor)
        assert set(observed) <= set(probabilities)
        columns = sorted(probabilities, key=probabilities.get)
        expected = np.array([probabilities[j] * draws for j in columns])
        seen = np.array([observed.get(j, 0) for j in columns], dtype=float)
        small = expected < 5  # pool the rare negatives into one bin
        expected = np.append(expected[~small], expected[small].sum())
        seen = np.append(seen[~small], seen[small].sum())
        keep = expected > 0
        result = stats.chisquare(seen[keep], expected[keep])
        assert result.pvalue > 0.001, (anchor, result)


def test_npair_rows_one_pair_per_class():
    x, labels = make_batch()
    y = labels.tolist()
    miner = build_miner("npair", negatives="other_pairs", seed=0)
    rows = miner(x, labels).tolist()
    pairs = sorted({(a, p) for a, p, _ in rows})
    assert sorted(y[a] for a, _ in pairs) == [0, 1, 2, 3]  # the singleton class forms no pair
    assert all(a != p and y[a] == y[p] for a, p in pairs)
    assert miner.stats["num_pairs"].item() == 4 and len(rows) == 4 * 3
    for a, p in pairs:
        negatives = sorted(n for b, q, n in rows if (b, q) == (a, p))
        assert negatives == sorted(q for b, q in pairs if b != a)


def test_lifted_rows_are_all_positive_negative_combinations():
    x, labels = make_batch()
    y = labels.tolist()
    rows = sorted(map(tuple, build_miner("lifted")(x, labels).tolist()))
    expected = sorted(
        (a, p, n)
        for a in range(len(y))
        for p in range(len(y))
        for n in range(len(y))
        if p != a and y[p] == y[a] and y[n] != y[a]
    )
    assert rows == expected


def test_rho_zero_never_pushes_and_one_always_pushes():
    x, labels = make_batch()
    y = labels.tolist()
    plain = build_miner("distance", seed=0)
    assert not isinstance(plain, RhoRegularizedMiner)
    for miner_rho in (1e-9, 0.0):
        miner = (
            RhoRegularizedMiner(build_miner("distance", seed=0), miner_rho) if miner_rho else plain
        )
        rows = miner(x, labels)
        assert (rows[:, 0] != rows[:, 1]).all()
    miner = build_miner("semihard", rho=1.0, seed=0)
    rows = miner(x, labels).tolist()
    with_classmate = [i for i in range(len(y)) if y.count(y[i]) > 1]
    assert [a for a, _, _ in rows] == with_classmate
    for a, same, classmate in rows:
        assert same == a and classmate != a and y[classmate] == y[a]
    assert miner.stats["push_triplets"].item() == len(rows)


def test_rho_push_fraction_is_binomial(one_thread):
    x, labels = make_batch()
    miner = build_miner("random", rho=0.3, seed=7)
    pushes = total = 0
    for _ in range(200):
        rows = miner(x, labels)
        pushed = int((rows[:, 0] == rows[:, 1]).sum())
        assert miner.stats["push_triplets"].item() == pushed
        pushes += pushed
        total += rows.shape[0]
    low, high = stats.binom.interval(0.99, total, 0.3)
    assert low <= pushes <= high


def test_build_miner_errors():
    with pytest.raises(
        ValueError, match=r"valid names: .*distance, lifted, npair, random, semihard, softhard"
    ):
        build_miner("hardest")
    for rho in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"rho must be a probability in \[0, 1\]"):
            build_miner("distance", rho=rho)
    for name in ("npair", "lifted"):
        with pytest.raises(
            ValueError, match=rf"needs a triplet miner .* '{name}' gives {name} tuples"
        ):
            build_miner(name, rho=0.2)
    with pytest.raises(
        ValueError,
        match=r"miner .distance. has no option cutoff; valid options: generator, lower_cutoff, seed$",
    ):
        build_miner("distance", cutoff=0.3)
    with pytest.raises(ValueError, match="either seed or generator"):
        build_miner("random", seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="labels N"):
        build_miner("random")(torch.randn(4, 3), torch.arange(5))
