"""Losses: each against an explicit float64 loop over its tuples, against pytorch-metric-learning
where the definitions match, and for finite gradients, empty batches, bf16 autocast and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning import reducers as pml_reducers

from dml_core.losses import LOSSES, DMLLoss, build_loss
from dml_core.miners import build_miner

NUM_CLASSES, PER_CLASS, DIM = 8, 3, 16
TUPLE_MINER = {"triplet": "distance", "npair": "npair", "lifted": "lifted"}


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(NUM_CLASSES * PER_CLASS, DIM, generator=generator, dtype=torch.float64)
    labels = torch.arange(NUM_CLASSES).repeat_interleave(PER_CLASS)
    return F.normalize(x, dim=1), labels


def make_loss(name: str, **hparams: object) -> DMLLoss:
    torch.manual_seed(1)
    return build_loss(name, num_classes=NUM_CLASSES, embed_dim=DIM, **hparams).double()


def tuples_for(loss: DMLLoss, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
    """The rows a loss consumes; triplet losses get ρ-regularized rows so push triplets occur."""
    if loss.miner_kind is None:
        return None
    rho = 0.4 if loss.miner_kind == "triplet" else 0.0
    return build_miner(TUPLE_MINER[loss.miner_kind], rho=rho, seed=2)(x, labels)


def as_lists(x: torch.Tensor, rows: torch.Tensor) -> tuple[np.ndarray, list[list[int]]]:
    return x.detach().numpy(), rows.tolist()


def dist(u: np.ndarray, v: np.ndarray) -> float:
    squared = float(((u - v) ** 2).sum())
    return math.sqrt(squared) if squared > 1e-12 else 0.0


# ---------------------------------------------------------------- explicit loop references


def squared_dist(u: np.ndarray, v: np.ndarray) -> float:
    return float(((u - v) ** 2).sum())


def loop_triplet(x, rows, margin=0.2, distance=squared_dist):
    """The official criteria/triplet.py: mean over rows of [‖a−p‖² − ‖a−n‖² + m]₊ (squared)."""
    return np.mean(
        [max(0.0, distance(x[a], x[p]) - distance(x[a], x[n]) + margin) for a, p, n in rows]
    )


def loop_margin(x, rows, labels, beta, margin=0.2, normalization="active_triplets", nu=0.0):
    """The official criteria/margin.py term by term: Σ_T (pos + neg) / N + ν Σ_T β_{y_a}, N the
    triplets with pos > 0 or neg > 0 (its sum of two bool tensors is a logical or), 0 when N = 0;
    ``"active_terms"``: N counts every non-zero term instead."""
    total, count, beta_sum = 0.0, 0, 0.0
    for a, p, n in rows:
        b = beta[labels[a]]
        pos = max(0.0, dist(x[a], x[p]) - b + margin)
        neg = max(0.0, b - dist(x[a], x[n]) + margin)
        total += pos + neg
        beta_sum += b
        if normalization == "active_triplets":
            count += 1 if (pos > 0 or neg > 0) else 0
        else:
            count += int(pos > 0) + int(neg > 0)
    return (total / count if count else 0.0) + nu * beta_sum


def loop_contrastive(x, rows):
    pos = [max(0.0, dist(x[a], x[p]) - 0.0) for a, p, _ in rows]
    neg = [max(0.0, 1.0 - dist(x[a], x[n])) for a, _, n in rows]
    return np.mean(pos) + np.mean(neg)


def loop_snr(x, rows, margin=0.2, reg=0.005):
    terms = []
    for a, p, n in rows:
        snr_ap = np.var(x[p] - x[a], ddof=1) / np.var(x[a], ddof=1)
        snr_an = np.var(x[n] - x[a], ddof=1) / np.var(x[a], ddof=1)
        terms.append(max(0.0, snr_ap - snr_an + margin))
    active = sum(int(t > 0) for t in terms)
    regulariser = np.mean([abs(x[a].sum()) for a, _, _ in rows])
    return sum(terms) / max(active, 1) + reg * regulariser


def loop_quadruplet(x, rows, fourth, has_fourth):
    first = np.mean([max(0.0, dist(x[a], x[p]) - dist(x[a], x[n]) + 0.2) for a, p, n in rows])
    second = [
        max(0.0, dist(x[a], x[p]) - dist(x[n], x[k]) + 0.2)
        for (a, p, n), k, ok in zip(rows, fourth, has_fourth, strict=True)
        if ok
    ]
    return first + (np.mean(second) if second else 0.0)


def loop_multisimilarity(x, labels, alpha=2.0, beta=40.0, base=0.5, eps=0.1):
    losses = []
    for a in range(len(x)):
        pos = [x[a] @ x[j] for j in range(len(x)) if labels[j] == labels[a] and j != a]
        neg = [x[a] @ x[j] for j in range(len(x)) if labels[j] != labels[a]]
        if not pos or not neg:
            continue
        mined_neg = [s for s in neg if s + eps > min(pos)]
        mined_pos = [s for s in pos if s - eps < max(neg)]
        if not mined_neg or not mined_pos:
            continue
        pos_term = math.log(1 + sum(math.exp(-alpha * (s - base)) for s in mined_pos)) / alpha
        neg_term = math.log(1 + sum(math.exp(beta * (s - base)) for s in mined_neg)) / beta
        losses.append(pos_term + neg_term)
    return np.mean(losses)


def loop_lifted(x, labels, margin=1.0, l2=0.005):
    losses = []
    for a in range(len(x)):
        pos = [dist(x[a], x[j]) for j in range(len(x)) if labels[j] == labels[a] and j != a]
        neg = [dist(x[a], x[j]) for j in range(len(x)) if labels[j] != labels[a]]
        if pos and neg:
            pos_term = math.log(sum(math.exp(d) for d in pos))
            neg_term = math.log(sum(math.exp(margin - d) for d in neg))
            losses.append(max(0.0, pos_term + neg_term))
    return np.mean(losses) + l2 * np.mean(np.linalg.norm(x, axis=1))


def npair_pairs(rows):
    return sorted({(a, p) for a, p, _ in rows})


def npair_negatives(rows, anchor):
    return [n for b, _, n in rows if b == anchor]


def loop_npair(x, rows, l2=0.005):
    """The official criteria/npair.py: per anchor log(1 + Σ_n exp(a·n − a·p)), averaged."""
    losses = []
    for a, p in npair_pairs(rows):
        negatives = npair_negatives(rows, a)
        losses.append(math.log(1 + sum(math.exp(x[a] @ x[n] - x[a] @ x[p]) for n in negatives)))
    return np.mean(losses) + l2 * np.mean(np.linalg.norm(x, axis=1))


def loop_angular_term(x, rows, alpha_degrees=45.0):
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    tan2 = math.tan(math.radians(alpha_degrees)) ** 2
    losses = []
    for a, p in npair_pairs(rows):
        f = [
            4 * tan2 * (unit[a] + unit[p]) @ unit[n] - 2 * (1 + tan2) * unit[a] @ unit[p]
            for n in npair_negatives(rows, a)
        ]
        losses.append(math.log(1 + sum(math.exp(v) for v in f)))
    return np.mean(losses)


def loop_proxynca(x, labels, proxies, scale=3.0):
    losses = []
    for i in range(len(x)):
        xi = scale * x[i] / np.linalg.norm(x[i])
        d = [float(((xi - scale * p / np.linalg.norm(p)) ** 2).sum()) for p in proxies]
        negatives = [d[c] for c in range(len(proxies)) if c != labels[i]]
        losses.append(d[labels[i]] + math.log(sum(math.exp(-v) for v in negatives)))
    return np.mean(losses)


def loop_cross_entropy(logits, label):
    return -logits[label] + math.log(sum(math.exp(v) for v in logits))


def loop_softmax(x, labels, weights, temperature=0.05):
    losses = []
    for i in range(len(x)):
        xi = x[i] / np.linalg.norm(x[i])
        logits = [xi @ (w / np.linalg.norm(w)) / temperature for w in weights]
        losses.append(loop_cross_entropy(logits, labels[i]))
    return np.mean(losses)


def loop_arcface(x, labels, weights, margin=0.5, scale=16.0, low=-1.0, high=1.0):
    """ArcFace with cosines clamped to [low, high]; the official criteria/arcface.py clamps to
    [1e-10, 1 − 1e-10]."""
    losses = []
    for i in range(len(x)):
        xi = x[i] / np.linalg.norm(x[i])
        cosines = [min(max(xi @ (w / np.linalg.norm(w)), low), high) for w in weights]
        theta = math.acos(cosines[labels[i]])
        assert theta <= math.pi - margin  # the data keeps the plain cos(θ + m) branch
        cosines[labels[i]] = math.cos(theta + margin)
        losses.append(loop_cross_entropy([scale * c for c in cosines], labels[i]))
    return np.mean(losses)


def loop_softtriple(x, labels, centers, k=2, gamma=0.1, la=8.0, delta=0.01, tau=0.2):
    centers = centers / np.linalg.norm(centers, axis=1, keepdims=True)
    losses = []
    for i in range(len(x)):
        xi = x[i] / np.linalg.norm(x[i])
        logits = []
        for c in range(NUM_CLASSES):
            sims = [xi @ centers[c * k + j] for j in range(k)]
            weights = [math.exp(s / gamma) for s in sims]
            s_ic = sum(w * s for w, s in zip(weights, sims, strict=True)) / sum(weights)
            logits.append(la * (s_ic - (delta if c == labels[i] else 0.0)))
        losses.append(loop_cross_entropy(logits, labels[i]))
    regulariser = 0.0
    for c in range(NUM_CLASSES):
        for t in range(k):
            for s in range(t + 1, k):
                sim = centers[c * k + t] @ centers[c * k + s]
                regulariser += math.sqrt(2.00001 - 2 * sim)
    return np.mean(losses) + tau * regulariser / (NUM_CLASSES * k * (k - 1))


def loop_histogram(x, labels, num_bins=65):
    width = 2.0 / (num_bins - 1)
    nodes = [-1.0 + r * width for r in range(num_bins)]
    h_pos, h_neg = [0.0] * num_bins, [0.0] * num_bins
    n_pos = n_neg = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            s = float(x[i] @ x[j])
            target = h_pos if labels[i] == labels[j] else h_neg
            n_pos += int(labels[i] == labels[j])
            n_neg += int(labels[i] != labels[j])
            for r, t in enumerate(nodes):
                target[r] += max(0.0, 1.0 - abs(s - t) / width)
    cdf, loss = 0.0, 0.0
    for r in range(num_bins):
        cdf += h_pos[r] / n_pos
        loss += h_neg[r] / n_neg * cdf
    return loss


def test_tuple_losses_match_loops(batch):
    x, labels = batch
    y = labels.tolist()
    for name, reference in [
        ("triplet", lambda xs, rows: loop_triplet(xs, rows)),
        ("contrastive", loop_contrastive),
        ("snr", loop_snr),
        ("npair", loop_npair),
        ("lifted", lambda xs, rows: loop_lifted(xs, y)),
    ]:
        loss = make_loss(name)
        rows = tuples_for(loss, x, labels)
        xs, row_list = as_lists(x, rows)
        expected = reference(xs, row_list)
        assert loss(x, labels, rows).item() == pytest.approx(expected, rel=1e-9, abs=1e-12), name


def test_triplet_rows_include_push_triplets(batch):
    x, labels = batch
    rows = tuples_for(make_loss("triplet"), x, labels)
    assert (rows[:, 0] == rows[:, 1]).any() and (rows[:, 0] != rows[:, 1]).any()


@pytest.mark.parametrize(
    "options",
    [{}, {"normalization": "active_terms"}, {"nu": 0.01}],
    ids=["official", "terms", "nu"],
)
def test_margin_matches_loop_with_per_class_beta(batch, options):
    x, labels = batch
    loss = make_loss("margin", **options)
    with torch.no_grad():
        loss.beta.copy_(torch.linspace(0.9, 1.4, NUM_CLASSES, dtype=torch.float64))
    rows = tuples_for(loss, x, labels)
    xs, row_list = as_lists(x, rows)
    expected = loop_margin(xs, row_list, labels.tolist(), loss.beta.detach().numpy(), **options)
    assert loss(x, labels, rows).item() == pytest.approx(expected, rel=1e-9, abs=1e-6)
    assert loss.float()(x.float(), labels, rows).item() == pytest.approx(expected, abs=1e-6)


def fixed_margin_batch() -> tuple[torch.Tensor, torch.Tensor, dict[str, list[list[int]]]]:
    """Points on a line; class 0's β = 1 and m = 0.2, so a positive term is active beyond 0.8 and
    a negative term below 1.2. Rows: positive term only (0.2), negative only (0.2), both (0.4),
    neither."""
    x = torch.tensor([[0.0, 0], [1.0, 0], [0.5, 0], [2.0, 0], [-1.0, 0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1, 1])
    rows = {"pos": [0, 1, 3], "neg": [0, 2, 4], "both": [0, 1, 4], "none": [0, 2, 3]}
    return x, labels, rows


@pytest.mark.parametrize(
    ("kinds", "by_triplets", "by_terms"),
    [
        (("pos", "neg", "both", "none"), 0.8 / 3, 0.8 / 4),  # N: 3 triplets, 4 terms
        (("both",), 0.4, 0.2),
        (("pos", "neg"), 0.2, 0.2),
        (("none",), 0.0, 0.0),  # N = 0: the loss is 0 and its gradient finite
    ],
)
def test_margin_official_count_on_fixed_triplets(kinds, by_triplets, by_terms):
    x, labels, named = fixed_margin_batch()
    row_list = [named[kind] for kind in kinds]
    rows = torch.tensor(row_list)
    beta = np.ones(2)
    for normalization, by_hand in (("active_triplets", by_triplets), ("active_terms", by_terms)):
        expected = loop_margin(
            x.numpy(), row_list, labels.tolist(), beta, normalization=normalization
        )
        assert expected == pytest.approx(by_hand, abs=1e-12)
        loss = build_loss("margin", num_classes=2, beta=1.0, normalization=normalization).double()
        inputs = x.clone().requires_grad_(True)
        value = loss(inputs, labels, rows)
        assert value.item() == pytest.approx(expected, abs=1e-6), normalization
        value.backward()
        assert torch.isfinite(inputs.grad).all() and torch.isfinite(loss.beta.grad).all()


def test_margin_official_form_is_larger_by_terms_per_active_triplet():
    """On random embeddings the official value / the active-terms value = #active terms /
    #active triplets, counted here from the loop; it lies in [1, 2] and exceeds 1 whenever some
    triplet has both terms active."""
    generator = torch.Generator().manual_seed(3)
    labels = torch.arange(NUM_CLASSES).repeat_interleave(4)
    ratios = []
    for _ in range(5):
        x = F.normalize(
            torch.randn(len(labels), DIM, generator=generator, dtype=torch.float64), dim=1
        )
        rows = build_miner("distance", rho=0.3, seed=2)(x, labels)
        official = make_loss("margin")(x, labels, rows).item()
        by_terms = make_loss("margin", normalization="active_terms")(x, labels, rows).item()
        terms = triplets = 0
        for a, p, n in rows.tolist():
            pos = dist(x[a].numpy(), x[p].numpy()) - 1.2 + 0.2 > 0
            neg = 1.2 - dist(x[a].numpy(), x[n].numpy()) + 0.2 > 0
            terms += int(pos) + int(neg)
            triplets += int(pos or neg)
        assert official / by_terms == pytest.approx(terms / triplets, rel=1e-9)
        assert 1.0 <= official / by_terms <= 2.0
        ratios.append(official / by_terms)
    assert max(ratios) > 1.0


def test_margin_rejects_an_unknown_normalization():
    with pytest.raises(
        ValueError,
        match=r"^normalization must be one of active_triplets, active_terms, got 'mean'$",
    ):
        build_loss("margin", num_classes=2, normalization="mean")


def test_quadruplet_matches_loop_and_fourth_samples_are_valid(batch):
    x, labels = batch
    rows = tuples_for(make_loss("quadruplet"), x, labels)
    fourth, has_fourth = make_loss("quadruplet", seed=5).draw_fourth_samples(labels, rows)
    y = labels.tolist()
    for (a, _, n), k, ok in zip(rows.tolist(), fourth.tolist(), has_fourth.tolist(), strict=True):
        valid = [j for j in range(len(y)) if y[j] not in (y[a], y[n])]
        assert ok == bool(valid) and (not ok or k in valid)
    xs, row_list = as_lists(x, rows)
    expected = loop_quadruplet(xs, row_list, fourth.tolist(), has_fourth.tolist())
    value = make_loss("quadruplet", seed=5)(x, labels, rows)
    assert value.item() == pytest.approx(expected, rel=1e-9)


def test_multisimilarity_matches_loop(batch):
    x, labels = batch
    expected = loop_multisimilarity(x.numpy(), labels.tolist())
    assert make_loss("multisimilarity")(x, labels).item() == pytest.approx(expected, rel=1e-9)


def test_angular_terms_match_loop(batch):
    x, labels = batch
    loss = make_loss("angular")
    rows = tuples_for(loss, x, labels)
    value = loss(x, labels, rows)
    xs, row_list = as_lists(x, rows)
    angular = loop_angular_term(xs, row_list)
    npair_with_l2 = loop_npair(xs, row_list)
    assert loss.stats["angular_term"].item() == pytest.approx(angular, rel=1e-9)
    assert value.item() == pytest.approx(npair_with_l2 + 2.0 * angular, rel=1e-9)


def test_class_based_losses_match_loops(batch):
    x, labels = batch
    y, xs = labels.tolist(), x.numpy()
    proxynca = make_loss("proxynca")
    expected = loop_proxynca(xs, y, proxynca.proxies.detach().numpy())
    assert proxynca(x, labels).item() == pytest.approx(expected, rel=1e-9)
    softmax = make_loss("softmax")
    expected = loop_softmax(xs, y, softmax.class_weights.detach().numpy())
    assert softmax(x, labels).item() == pytest.approx(expected, rel=1e-9)
    arcface = make_loss("arcface", cosine_range="full")
    expected = loop_arcface(xs, y, arcface.class_weights.detach().numpy())
    assert arcface(x, labels).item() == pytest.approx(expected, rel=1e-9)
    softtriple = make_loss("softtriple")
    expected = loop_softtriple(xs, y, softtriple.centers.detach().numpy())
    assert softtriple(x, labels).item() == pytest.approx(expected, rel=1e-9)


def test_histogram_matches_loop(batch):
    x, labels = batch
    expected = loop_histogram(x.numpy(), labels.tolist())
    assert make_loss("histogram")(x, labels).item() == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------- the official code's conventions


def test_triplet_is_squared_as_the_official_code_on_fixed_triplets():
    """criteria/triplet.py: [‖a−p‖² − ‖a−n‖² + 0.2]₊. Rows (a, p, n) = (0, 1, 2), (0, 3, 4):
    squared (0.25 − 0.36 + 0.2) = 0.09 and (0.81 − 0.64 + 0.2) = 0.37, mean 0.23;
    Euclidean (0.5 − 0.6 + 0.2) = 0.1 and (0.9 − 0.8 + 0.2) = 0.3, mean 0.2."""
    x = torch.tensor(
        [[0.0, 0.0], [0.5, 0.0], [0.6, 0.0], [0.0, 0.9], [0.8, 0.0]], dtype=torch.float64
    )
    labels = torch.tensor([0, 0, 1, 0, 2])
    rows = torch.tensor([[0, 1, 2], [0, 3, 4]])
    assert make_loss("triplet")(x, labels, rows).item() == pytest.approx(0.23, abs=1e-12)
    euclidean = make_loss("triplet", distance="euclidean")(x, labels, rows)
    assert euclidean.item() == pytest.approx(0.2, abs=1e-12)
    xs, row_list = as_lists(x, rows)
    assert loop_triplet(xs, row_list) == pytest.approx(0.23, abs=1e-12)
    assert loop_triplet(xs, row_list, distance=dist) == pytest.approx(0.2, abs=1e-12)
    with pytest.raises(ValueError, match="distance must be one of squared, euclidean"):
        make_loss("triplet", distance="cosine")


def test_snr_regulariser_is_off_with_the_plain_distance_miner(batch):
    """criteria/snr.py sets λ = 0 when its miner is ``distance`` (not ``rho_distance``)."""
    x, labels = batch
    rows = build_miner("distance", seed=2)(x, labels)
    xs, row_list = as_lists(x, rows)
    loss = make_loss("snr")
    for miner, rho, expected in [
        ("distance", 0.0, 0.0),
        ("distance", 0.35, 0.005),
        ("semihard", 0.0, 0.005),
        ("distance", 0.0, 0.0),
    ]:
        loss.use_miner(miner, rho)
        assert loss.reg_lambda == expected, (miner, rho)
    loss.use_miner("distance")
    assert loss(x, labels, rows).item() == pytest.approx(loop_snr(xs, row_list, reg=0.0), rel=1e-9)
    fixed = make_loss("snr", reg_lambda=0.01)
    fixed.use_miner("distance")
    assert fixed.reg_lambda == 0.01


def balanced_batch(num_classes: int = 56, per_class: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(num_classes * per_class, DIM, generator=generator, dtype=torch.float64)
    return F.normalize(x, dim=1), torch.arange(num_classes).repeat_interleave(per_class)


@pytest.mark.slow
def test_npair_and_angular_use_every_anchor_and_all_other_classes():
    """batchminer/npair.py: at batch 112 with 2 per class, 112 anchors (positive: the classmate),
    each with the 110 samples of other classes; the losses against explicit loops on those rows.
    ``negatives="other_pairs"`` (Sohn's N-pair-mc) gives 56 anchors with 55 negatives."""
    x, labels = balanced_batch()
    y = labels.tolist()
    miner = build_miner("npair", seed=4)
    rows = miner(x, labels)
    row_list = rows.tolist()
    anchors = sorted({a for a, _, _ in row_list})
    assert anchors == list(range(112)) and miner.stats["num_pairs"].item() == 112
    for a, p in npair_pairs(row_list):
        negatives = npair_negatives(row_list, a)
        assert p != a and y[p] == y[a]
        assert sorted(negatives) == [n for n in range(112) if y[n] != y[a]]
    xs = x.numpy()
    npair = make_loss("npair")
    assert npair(x, labels, rows).item() == pytest.approx(loop_npair(xs, row_list), rel=1e-9)
    angular = make_loss("angular")
    value = angular(x, labels, rows)
    expected_angular = loop_angular_term(xs, row_list)
    assert angular.stats["angular_term"].item() == pytest.approx(expected_angular, rel=1e-9)
    expected = loop_npair(xs, row_list) + 2.0 * expected_angular
    assert value.item() == pytest.approx(expected, rel=1e-9)

    pairs_miner = build_miner("npair", negatives="other_pairs", seed=4)
    pair_rows = pairs_miner(x, labels).tolist()
    assert len({a for a, _, _ in pair_rows}) == 56 and len(pair_rows) == 56 * 55
    assert npair(x, labels, torch.tensor(pair_rows)).item() == pytest.approx(
        loop_npair(xs, pair_rows), rel=1e-9
    )
    with pytest.raises(ValueError, match="negatives must be one of other_classes, other_pairs"):
        build_miner("npair", negatives="all")


def test_arcface_clamps_cosines_as_the_official_code(batch):
    """criteria/arcface.py clamps cos θ to [1e-10, 1 − 1e-10] (negative cosines become 1e-10) and
    replaces the target logit by cos(θ_y + m); "full" clamps to [−1, 1] up to 1e-7."""
    x, labels = batch
    y, xs = labels.tolist(), x.numpy()
    official = make_loss("arcface")
    weights = official.class_weights.detach().numpy()
    unit_weights = weights / np.linalg.norm(weights, axis=1, keepdims=True)
    assert (xs @ unit_weights.T < 0).any()  # the clamp changes these logits
    expected = loop_arcface(xs, y, weights, low=1e-10, high=1 - 1e-10)
    assert official(x, labels).item() == pytest.approx(expected, rel=1e-9)
    full = make_loss("arcface", cosine_range="full")
    assert full(x, labels).item() == pytest.approx(loop_arcface(xs, y, weights), rel=1e-9)
    assert abs(full(x, labels).item() - expected) > 1e-3
    with pytest.raises(ValueError, match="cosine_range must be one of official, full"):
        make_loss("arcface", cosine_range="wide")


# ---------------------------------------------------------------- pytorch-metric-learning oracle


def pair_tuple(rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return rows[:, 0], rows[:, 1], rows[:, 0], rows[:, 2]


def test_matches_pml_where_definitions_agree(batch):
    """Triplet (plain mean), contrastive (mean of each pair term), margin's ``active_terms`` option
    (learned β, divided by the non-zero terms), SNR (triplet hinge on the SNR distance, averaged
    over non-zero terms; its regulariser switched off), multi-similarity (pml's miner with
    ε = 0.1, all anchors valid)."""
    x, labels = batch
    rows = tuples_for(make_loss("triplet"), x, labels)
    triplets = tuple(rows.unbind(dim=1))
    mean = pml_reducers.MeanReducer()
    squared = pml_distances.LpDistance(power=2)
    checks = [
        (
            "triplet",
            {},
            pml_losses.TripletMarginLoss(margin=0.2, distance=squared, reducer=mean),
            triplets,
        ),
        (
            "triplet",
            {"distance": "euclidean"},
            pml_losses.TripletMarginLoss(margin=0.2, reducer=mean),
            triplets,
        ),
        (
            "contrastive",
            {},
            pml_losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0, reducer=mean),
            pair_tuple(rows),
        ),
        (
            "margin",
            {"normalization": "active_terms"},
            pml_losses.MarginLoss(
                margin=0.2, beta=1.2, learn_beta=True, num_classes=NUM_CLASSES
            ).double(),
            triplets,
        ),
        (
            "snr",
            {"reg_lambda": 0.0},
            pml_losses.TripletMarginLoss(margin=0.2, distance=pml_distances.SNRDistance()),
            triplets,
        ),
    ]
    for name, hparams, oracle, indices in checks:
        ours = make_loss(name, **hparams)(x, labels, rows)
        assert ours.item() == pytest.approx(oracle(x, labels, indices).item(), rel=1e-9), name

    ms_pairs = pml_miners.MultiSimilarityMiner(epsilon=0.1)(x, labels)
    assert set(ms_pairs[0].tolist()) == set(range(len(x)))  # every anchor valid, so means agree
    assert set(ms_pairs[2].tolist()) == set(range(len(x)))
    oracle = pml_losses.MultiSimilarityLoss(alpha=2, beta=40, base=0.5)(x, labels, ms_pairs)
    ours = make_loss("multisimilarity")(x, labels)
    assert ours.item() == pytest.approx(oracle.item(), rel=1e-9)


@pytest.mark.filterwarnings("ignore:Using a non-tuple sequence:UserWarning")  # inside pml
def test_tuple_set_losses_match_pml(batch):
    """Lifted (pml's generalised lifted structure + our norm penalty), N-pair (pml picks the same one
    pair per class from our rows), angular term (pml with the pairs' positives as references, so its
    negatives are the other pairs' positives, as in our rows), histogram (64 intervals = 65 nodes)."""
    x, labels = batch
    lifted = make_loss("lifted")
    rows = tuples_for(lifted, x, labels)
    oracle = pml_losses.GeneralizedLiftedStructureLoss(neg_margin=1.0, pos_margin=0.0)(x, labels)
    expected = oracle.item() + 0.005 * x.norm(dim=1).mean().item()
    assert lifted(x, labels, rows).item() == pytest.approx(expected, rel=1e-9)

    npair = make_loss("npair")
    rows = build_miner("npair", negatives="other_pairs", seed=2)(x, labels)
    pairs = torch.tensor(npair_pairs(rows.tolist()))
    empty = torch.empty(0, dtype=torch.long)
    oracle = pml_losses.NPairsLoss(
        distance=pml_distances.DotProductSimilarity(normalize_embeddings=False)
    )
    expected = oracle(x, labels, (pairs[:, 0], pairs[:, 1], empty, empty)).item()
    assert npair(x, labels, rows).item() == pytest.approx(expected + 0.005, rel=1e-9)

    angular = make_loss("angular")
    angular(x, labels, rows)
    index = torch.arange(len(pairs))
    oracle = pml_losses.AngularLoss(alpha=45)(
        x[pairs[:, 0]],
        labels[pairs[:, 0]],
        (index, index, index[:1], index[1:2]),
        x[pairs[:, 1]],
        labels[pairs[:, 1]],
    )
    assert angular.stats["angular_term"].item() == pytest.approx(oracle.item(), rel=1e-9)

    oracle = pml_losses.HistogramLoss(n_bins=64)(x, labels)
    assert make_loss("histogram")(x, labels).item() == pytest.approx(oracle.item(), rel=1e-9)


def test_class_based_losses_match_pml(batch):
    """Normalised softmax, ArcFace (pml's margin is in degrees) and the SoftTriple cross-entropy
    (pml keeps the centre regulariser apart). ProxyNCA is not compared: pml's NCA keeps the own
    proxy in the denominator, the paper and the official code do not."""
    x, labels = batch
    softmax = make_loss("softmax")
    oracle = pml_losses.NormalizedSoftmaxLoss(NUM_CLASSES, DIM, temperature=0.05).double()
    oracle.W.data = softmax.class_weights.detach().T.clone()
    assert softmax(x, labels).item() == pytest.approx(oracle(x, labels).item(), rel=1e-9)

    arcface = make_loss("arcface", cosine_range="full")
    oracle = pml_losses.ArcFaceLoss(NUM_CLASSES, DIM, margin=math.degrees(0.5), scale=16).double()
    oracle.W.data = arcface.class_weights.detach().T.clone()
    assert arcface(x, labels).item() == pytest.approx(oracle(x, labels).item(), rel=1e-9)

    softtriple = make_loss("softtriple", reg_weight=0.0)
    oracle = pml_losses.SoftTripleLoss(
        NUM_CLASSES, DIM, centers_per_class=2, la=8, gamma=0.1, margin=0.01
    ).double()
    oracle.fc.data = softtriple.centers.detach().T.clone()
    assert softtriple(x, labels).item() == pytest.approx(oracle(x, labels).item(), rel=1e-9)


# ---------------------------------------------------------------- behaviour shared by all losses


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradients_are_finite_and_reach_parameters(name, batch):
    x, labels = batch
    x = x.clone().requires_grad_()
    loss = make_loss(name)
    value = loss(x, labels, tuples_for(loss, x, labels))
    value.backward()
    assert torch.isfinite(value) and value.ndim == 0
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for parameter in loss.parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()
    assert all(v.ndim == 0 and not v.requires_grad for v in loss.stats.values())


@pytest.mark.parametrize("name", sorted(n for n, c in LOSSES.items() if c.miner_kind))
def test_no_tuples_gives_connected_zero(name, batch):
    x, labels = batch
    x = x.clone().requires_grad_()
    loss = make_loss(name)
    value = loss(x, labels, torch.empty(0, 3, dtype=torch.long))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(x.grad).all()
    assert set(loss.stats) == set(loss.empty_stats()) and loss.stats
    for parameter in loss.parameters():  # margin's β: a zero gradient, not None (DDP, optimizers)
        assert parameter.grad is not None and not parameter.grad.any()


@pytest.mark.parametrize("name", ["multisimilarity", "histogram"])
def test_batch_without_classmates_gives_zero(name):
    x = F.normalize(torch.randn(6, DIM), dim=1).requires_grad_()
    value = make_loss(name).float()(x, torch.arange(6))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_bf16_autocast_runs_and_stays_finite(name, batch):
    x, labels = batch
    torch.manual_seed(0)
    head = torch.nn.Linear(DIM, DIM)
    loss = build_loss(name, num_classes=NUM_CLASSES, embed_dim=DIM)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeddings = F.normalize(head(x.float()), dim=1)
        assert embeddings.dtype == torch.bfloat16
        value = loss(embeddings, labels, tuples_for(loss, embeddings, labels))
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert torch.isfinite(head.weight.grad).all()


def test_float32_close_to_float64(batch):
    x, labels = batch
    for name in sorted(LOSSES):
        loss = make_loss(name)
        rows = tuples_for(loss, x, labels)
        expected = make_loss(name, **({"seed": 0} if name == "quadruplet" else {}))(x, labels, rows)
        ours = make_loss(name, **({"seed": 0} if name == "quadruplet" else {})).float()
        assert ours(x.float(), labels, rows).item() == pytest.approx(expected.item(), rel=1e-4)


TUPLE_LOSSES = {
    "triplet",
    "margin",
    "contrastive",
    "snr",
    "quadruplet",
    "npair",
    "angular",
    "lifted",
}
"""Losses on a miner's tuples, as the paper's method table has them."""


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_forward_asks_tuples_of_tuple_losses_only(batch, name):
    x, labels = batch
    loss = make_loss(name)
    if name in TUPLE_LOSSES:
        with pytest.raises(ValueError, match=r"needs \w+ tuples from a miner"):
            loss(x, labels)
    else:
        with pytest.raises(ValueError, match=r"; pass no triplets$"):
            loss(x, labels, torch.zeros(1, 3, dtype=torch.long))


def test_class_attributes_and_param_lr_multipliers():
    kinds = {name: cls.miner_kind for name, cls in LOSSES.items()}
    assert kinds == {
        "triplet": "triplet", "margin": "triplet", "contrastive": "triplet", "snr": "triplet",
        "quadruplet": "triplet", "npair": "npair", "angular": "npair", "lifted": "lifted",
        "multisimilarity": None, "proxynca": None, "softmax": None, "arcface": None,
        "softtriple": None, "histogram": None,
    }  # fmt: skip
    # The official code's absolute rates (β 5e-4, …) at its network lr 1e-5, as multipliers.
    names = ("margin", "proxynca", "softmax", "arcface", "softtriple")
    multipliers = {n: make_loss(n).param_lr_multiplier for n in names}
    assert multipliers == {
        "margin": 50.0, "proxynca": 50.0, "softmax": 1.0, "arcface": 50.0, "softtriple": 1.0
    }  # fmt: skip
    assert make_loss("margin", beta_lr_multiplier=3.0).param_lr_multiplier == 3.0
    triplet = make_loss("triplet")
    assert triplet.param_lr_multiplier is None and not list(triplet.parameters())


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("name", ["margin", "proxynca", "softmax", "arcface", "softtriple"])
def test_class_losses_need_num_classes(name):
    with pytest.raises(ValueError, match="num_classes"):
        build_loss(name, embed_dim=DIM)


def test_registry_and_argument_errors(batch):
    x, labels = batch
    with pytest.raises(ValueError, match=r"valid names: .*margin"):
        build_loss("nonsense")
    with pytest.raises(
        ValueError, match=r"loss 'triplet' has no option margn; valid options: distance, margin$"
    ):
        build_loss("triplet", margn=0.3)
    with pytest.raises(ValueError, match="needs triplet tuples from a miner"):
        make_loss("triplet")(x, labels)
    with pytest.raises(ValueError, match="mines its pairs internally; pass no triplets"):
        make_loss("multisimilarity")(x, labels, torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="T×3"):
        make_loss("triplet")(x, labels, torch.zeros(4, dtype=torch.long))
