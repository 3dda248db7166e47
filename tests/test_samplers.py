"""Batch samplers: layout, coverage, determinism, resume, and the embedding-based selections
against explicit-loop float64 references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial.distance
import scipy.stats
import torch
from torch.utils.data import DataLoader, TensorDataset

from dml_core.samplers import SAMPLERS, build_sampler, epoch_generator

ALL_SAMPLERS = sorted(SAMPLERS)
EMBEDDING_SAMPLERS = ["greedy_coreset", "d2_coreset", "disthist_batchmatch", "fid_batchmatch"]
CLASS_BASED = [name for name in ALL_SAMPLERS if name != "random"]


def uneven_labels(num_classes: int = 30, seed: int = 0) -> np.ndarray:
    """Labels with class sizes between 1 and 12 (some smaller than samples_per_class)."""
    sizes = np.random.default_rng(seed).integers(1, 13, size=num_classes)
    return np.repeat(np.arange(num_classes) * 7 + 3, sizes)  # non-contiguous label values


def toy_embeddings(num_items: int, dim: int = 8, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(num_items, dim, generator=generator), dim=1)


def make_sampler(name: str, labels: np.ndarray, batch_size: int, per_class: int, **options):
    sampler = build_sampler(name, labels, batch_size, per_class, **options)
    if sampler.needs_embeddings:
        sampler.update_embeddings(toy_embeddings(len(labels)))
    return sampler


def assert_class_layout(batch: list[int], labels: np.ndarray, per_class: int) -> None:
    """Blocks of ``per_class`` items share one class; each class occupies one contiguous run."""
    batch_labels = labels[batch]
    blocks = batch_labels.reshape(-1, per_class)
    assert (blocks == blocks[:, :1]).all()
    runs = batch_labels[np.r_[True, batch_labels[1:] != batch_labels[:-1]]]
    assert len(runs) == len(set(runs.tolist()))


@pytest.mark.parametrize("name", ALL_SAMPLERS)
def test_batches_have_exact_size_and_valid_indices(name: str) -> None:
    labels = uneven_labels()
    sampler = make_sampler(name, labels, 12, 3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == len(labels) // 12
    for batch in batches:
        assert len(batch) == 12
        assert all(isinstance(index, int) and 0 <= index < len(labels) for index in batch)


@pytest.mark.parametrize("name", CLASS_BASED)
def test_class_based_batches_are_class_contiguous_blocks(name: str) -> None:
    labels = uneven_labels()
    sampler = make_sampler(name, labels, 12, 3)
    for batch in sampler:
        assert_class_layout(batch, labels, 3)
        # 30 classes, 4 per batch: distinct classes are always possible.
        assert len(set(labels[batch].tolist())) == 4


@pytest.mark.parametrize("name", CLASS_BASED)
def test_batch_size_must_be_a_multiple_of_samples_per_class(name: str) -> None:
    with pytest.raises(ValueError, match="multiple of samples_per_class"):
        build_sampler(name, uneven_labels(), 10, 3)


def test_random_sampler_ignores_samples_per_class_and_covers_each_index_once() -> None:
    labels = uneven_labels()
    sampler = build_sampler("random", labels, 10, 3)
    indices = [index for batch in sampler for index in batch]
    assert len(indices) == len(set(indices)) == (len(labels) // 10) * 10


def test_class_random_visits_every_class_and_uses_items_evenly() -> None:
    labels = np.repeat(np.arange(100), 59)[:5864]  # CUB-sized
    sampler = build_sampler("class_random", labels, 112, 2, seed=3)
    batches = np.array(list(sampler))
    assert set(labels[batches].ravel().tolist()) == set(range(100))
    # Items of a class are cycled through: no item used more than once more than the least used.
    for label in range(100):
        members = np.flatnonzero(labels == label)
        uses = np.bincount(batches.ravel(), minlength=len(labels))[members]
        assert uses.max() - uses.min() <= 1


def test_class_random_blocks_repeat_items_only_for_small_classes() -> None:
    labels = uneven_labels()
    sizes = np.bincount(labels)
    sampler = build_sampler("class_random", labels, 12, 3, seed=1)
    saw_small_class = False
    for epoch in range(5):
        sampler.set_epoch(epoch)
        for batch in sampler:
            for block in np.array(batch).reshape(-1, 3):
                size = sizes[labels[block[0]]]
                assert len(set(block.tolist())) == min(size, 3)
                saw_small_class |= size < 3
    assert saw_small_class


def test_distinct_classes_spreads_evenly_when_a_batch_needs_more_classes_than_exist() -> None:
    labels = np.repeat(np.arange(3), 20)
    sampler = build_sampler("class_random", labels, 16, 2)  # 8 blocks from 3 classes
    for batch in sampler:
        assert_class_layout(batch, labels, 2)
        counts = np.bincount(labels[batch], minlength=3) // 2
        assert counts.max() - counts.min() <= 1


def test_class_draw_with_replacement_repeats_classes() -> None:
    labels = np.repeat(np.arange(20), 10)
    sampler = build_sampler("class_random", labels, 16, 2, distinct_classes=False)
    distinct_per_batch = [len(set(labels[batch].tolist())) for batch in sampler]
    assert min(distinct_per_batch) < 8  # 8 draws from 20 classes repeat with probability 0.8
    for batch in sampler:
        assert_class_layout(batch, labels, 2)


@pytest.mark.parametrize("name", ALL_SAMPLERS)
def test_batches_depend_only_on_seed_and_epoch(name: str) -> None:
    labels = uneven_labels()
    first = make_sampler(name, labels, 12, 3, seed=5)
    second = make_sampler(name, labels, 12, 3, seed=5)
    first.set_epoch(2)
    second.set_epoch(2)
    assert list(first) == list(second) == list(first)
    second.set_epoch(3)
    assert list(second) != list(first)
    other_seed = make_sampler(name, labels, 12, 3, seed=6)
    other_seed.set_epoch(2)
    assert list(other_seed) != list(first)


def test_resume_mid_epoch_continues_with_the_remaining_batches() -> None:
    labels = uneven_labels()
    sampler = build_sampler("class_random", labels, 12, 3, seed=2)
    sampler.set_epoch(4)
    full_epoch = list(sampler)
    iterator = iter(sampler)
    for _ in range(3):
        next(iterator)
    state = sampler.state_dict()
    assert state == {"epoch": 4, "batch_in_epoch": 3}

    resumed = build_sampler("class_random", labels, 12, 3, seed=2)
    resumed.load_state_dict(state)
    resumed.set_epoch(4)  # same epoch: the skip is kept
    assert list(resumed) == full_epoch[3:]
    assert list(resumed) == full_epoch  # the skip applies to one iteration only

    resumed.load_state_dict(state)
    resumed.set_epoch(5)  # another epoch cancels the skip
    assert len(list(resumed)) == len(full_epoch)
    with pytest.raises(ValueError, match="batch_in_epoch"):
        resumed.load_state_dict({"epoch": 0, "batch_in_epoch": len(full_epoch) + 1})


def test_sampler_plugs_into_a_dataloader() -> None:
    labels = uneven_labels()
    dataset = TensorDataset(torch.arange(len(labels)), torch.as_tensor(labels))
    sampler = build_sampler("class_random", labels, 12, 3)
    loaded = [indices.tolist() for indices, _ in DataLoader(dataset, batch_sampler=sampler)]
    assert loaded == list(sampler)


@pytest.mark.parametrize("name", EMBEDDING_SAMPLERS)
def test_embedding_samplers_fall_back_to_class_random_before_embeddings(name: str) -> None:
    labels = uneven_labels()
    sampler = build_sampler(name, labels, 12, 3, seed=9)
    assert sampler.needs_embeddings
    reference = build_sampler("class_random", labels, 12, 3, seed=9)
    assert list(sampler) == list(reference)
    sampler.update_embeddings(toy_embeddings(len(labels)))
    assert list(sampler) != list(reference)
    with pytest.raises(ValueError, match="shape"):
        sampler.update_embeddings(torch.zeros(len(labels) - 1, 8))


def test_unknown_names_and_options_are_listed() -> None:
    with pytest.raises(ValueError, match="class_random"):
        build_sampler("nope", uneven_labels(), 12, 3)
    with pytest.raises(ValueError, match="pool_multiplier"):
        build_sampler("greedy_coreset", uneven_labels(), 12, 3, pool_size=3)
    # The options of every class up the hierarchy, without what build_sampler itself passes.
    with pytest.raises(
        ValueError,
        match=r"sampler 'disthist_batchmatch' has no option bins; "
        r"valid options: num_bins, num_candidates, reference_size$",
    ):
        build_sampler("disthist_batchmatch", uneven_labels(), 12, 3, bins=3)
    with pytest.raises(
        ValueError, match=r"sampler 'random' has no option x; valid options: \(none\)"
    ):
        build_sampler("random", uneven_labels(), 12, 3, x=1)


def test_options_reach_the_class_that_names_them() -> None:
    sampler = build_sampler(
        "disthist_batchmatch", uneven_labels(), 12, 3, seed=4, num_bins=7, num_candidates=2
    )
    assert (sampler.num_bins, sampler.num_candidates, sampler.seed) == (7, 2, 4)
    assert sampler.reference_size == min(1024, len(uneven_labels()))
    assert build_sampler("class_random", uneven_labels(), 12, 3, distinct_classes=False).name == (
        "class_random"
    )


def farthest_point_reference(points: np.ndarray, first: int, count: int) -> list[int]:
    """Greedy k-center, explicit loops in float64."""
    picks = [first]
    while len(picks) < count:
        best, best_distance = -1, -1.0
        for candidate in range(len(points)):
            if candidate in picks:
                continue
            distance = min(np.linalg.norm(points[candidate] - points[pick]) for pick in picks)
            if distance > best_distance:
                best, best_distance = candidate, distance
        picks.append(best)
    return picks


def min_pairwise_distance(points: np.ndarray) -> float:
    return float(scipy.spatial.distance.pdist(points).min())


def test_greedy_coreset_matches_farthest_point_loop_and_is_spread() -> None:
    num_items = 400
    labels = np.arange(num_items)  # one item per class: no class constraint
    embeddings = toy_embeddings(num_items, dim=3, seed=1).double()
    sampler = build_sampler("greedy_coreset", labels, 10, 1, pool_multiplier=4)
    sampler.update_embeddings(embeddings)
    generator = torch.Generator().manual_seed(0)
    pools = torch.stack([torch.randperm(num_items, generator=generator)[:40] for _ in range(6)])
    picks = sampler.select_from_pool(pools, generator)
    points = embeddings.numpy()
    for pool, pool_picks in zip(pools.numpy(), picks.numpy(), strict=True):
        expected = farthest_point_reference(points[pool], int(pool_picks[0]), 10)
        assert pool_picks.tolist() == expected
        random_subset = np.random.default_rng(0).choice(pool, 10, replace=False)
        greedy_spread = min_pairwise_distance(points[pool[pool_picks]])
        assert greedy_spread >= min_pairwise_distance(points[random_subset])


def clustered_embeddings(clusters: int, per_cluster: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centres = 10 * torch.randn(clusters, 4, generator=generator, dtype=torch.float64)
    noise = 0.01 * torch.randn(clusters, per_cluster, 4, generator=generator, dtype=torch.float64)
    return (centres.unsqueeze(1) + noise).reshape(-1, 4)


@pytest.mark.parametrize("name", ["greedy_coreset", "d2_coreset"])
def test_coreset_picks_cover_more_clusters_than_random(name: str) -> None:
    clusters, per_cluster, picks_per_pool = 8, 50, 8
    labels = np.arange(clusters * per_cluster)
    cluster_of = labels // per_cluster
    sampler = build_sampler(name, labels, picks_per_pool, 1)
    sampler.update_embeddings(clustered_embeddings(clusters, per_cluster))
    generator = torch.Generator().manual_seed(1)
    pools = torch.stack([torch.randperm(len(labels), generator=generator) for _ in range(50)])
    picks = pools.gather(1, sampler.select_from_pool(pools, generator)).numpy()
    coreset_coverage = np.mean([len(set(cluster_of[row])) for row in picks])
    random_rows = pools[:, :picks_per_pool].numpy()
    random_coverage = np.mean([len(set(cluster_of[row])) for row in random_rows])
    assert coreset_coverage > random_coverage
    # Clusters 1,000× wider apart than they are wide: both rules jump to a new cluster each time.
    assert coreset_coverage == clusters


def test_d2_draws_in_proportion_to_squared_distance_among_eligible_items() -> None:
    sampler = build_sampler("d2_coreset", np.arange(10), 2, 1)
    min_distance = torch.tensor([0.0, 1.0, 2.0, 3.0, 1.0], dtype=torch.float64)
    eligible = torch.tensor([False, True, True, True, False])
    draws = 200_000
    uniform = torch.rand(draws, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    picks = sampler.choose_next(min_distance.expand(draws, -1), eligible.expand(draws, -1), uniform)
    frequencies = np.bincount(picks.numpy(), minlength=5) / draws
    np.testing.assert_allclose(frequencies, [0, 1 / 14, 4 / 14, 9 / 14, 0], atol=0.005)


def test_coreset_prefers_new_classes_and_completes_blocks_with_their_class() -> None:
    labels = np.repeat(np.arange(40), 6)
    sampler = build_sampler("greedy_coreset", labels, 16, 4, pool_multiplier=3)
    sampler.update_embeddings(toy_embeddings(len(labels), seed=4))
    for batch in sampler:
        assert_class_layout(batch, labels, 4)
        assert len(set(batch)) == 16  # classes of 6 items give 4 distinct items per block
        assert len(set(labels[batch].tolist())) == 4


def histogram_cost_reference(
    points: np.ndarray, candidate: np.ndarray, reference: np.ndarray, bins: int
) -> float:
    """Wasserstein-1 between distance histograms, explicit loops and scipy in float64."""
    reference_distances = scipy.spatial.distance.pdist(points[reference])
    low, high = reference_distances.min(), reference_distances.max()
    candidate_distances = [
        np.linalg.norm(points[candidate[i]] - points[candidate[j]])
        for i in range(len(candidate))
        for j in range(i + 1, len(candidate))
    ]
    candidate_distances = np.clip(candidate_distances, low, high)
    reference_histogram = np.histogram(reference_distances, bins, (low, high))[0]
    candidate_histogram = np.histogram(candidate_distances, bins, (low, high))[0]
    centres = np.linspace(low, high, bins + 1)[:-1] + (high - low) / (2 * bins)
    return scipy.stats.wasserstein_distance(
        centres, centres, reference_histogram, candidate_histogram
    )


def frechet_cost_reference(points: np.ndarray, candidate: np.ndarray, reference: np.ndarray):
    """Fréchet distance between fitted Gaussians through scipy's sqrtm, float64."""
    batch, ref = points[candidate], points[reference]
    batch_cov, ref_cov = np.cov(batch, rowvar=False), np.cov(ref, rowvar=False)
    cross = scipy.linalg.sqrtm(ref_cov @ batch_cov).real
    mean_term = np.sum((batch.mean(0) - ref.mean(0)) ** 2)
    return mean_term + np.trace(ref_cov) + np.trace(batch_cov) - 2 * np.trace(cross)


@pytest.mark.parametrize(
    ("name", "reference_cost"),
    [
        ("disthist_batchmatch", lambda p, c, r: histogram_cost_reference(p, c, r, 20)),
        ("fid_batchmatch", frechet_cost_reference),
    ],
)
def test_batch_match_costs_and_choice_match_explicit_loop(name: str, reference_cost) -> None:
    labels = np.repeat(np.arange(25), 8)
    options = {"num_bins": 20} if name == "disthist_batchmatch" else {}
    sampler = build_sampler(name, labels, 16, 2, num_candidates=5, **options)
    embeddings = toy_embeddings(len(labels), dim=6, seed=2).double()
    embeddings[labels < 5] *= 1.5  # some candidates far from the reference distribution
    sampler.update_embeddings(embeddings)
    generator = epoch_generator(0, 0)
    candidates = sampler.class_random_batches(12, True, generator).reshape(3, 4, 16)
    reference = torch.randperm(len(labels), generator=generator)[:60]

    costs = sampler.candidate_costs(candidates, reference)
    points = embeddings.numpy()
    expected = np.array(
        [
            [reference_cost(points, candidate, reference.numpy()) for candidate in row]
            for row in candidates.numpy()
        ]
    )
    np.testing.assert_allclose(costs.numpy(), expected, rtol=1e-6, atol=1e-9)
    assert (expected.max(axis=1) > expected.min(axis=1)).all()  # the choice matters
    chosen = sampler.select_best(candidates, reference)
    for row, batch in enumerate(chosen.numpy()):
        assert batch.tolist() == candidates[row, expected[row].argmin()].tolist()
