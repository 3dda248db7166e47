"""Retrieval and clustering metrics against hand-worked cases, brute force and pytorch-metric-learning."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score
from sklearn.metrics.cluster import pair_confusion_matrix

from dml_core.metrics import (
    kmeans_clusters,
    leave_one_out_neighbors,
    pair_counting_f1,
    retrieval_metrics,
    retrieval_report,
)
from dml_core.metrics import retrieval as retrieval_module
from dml_core.metrics.knn import drop_query_by_index

# Six points on a line. Class a = {A, B, D} (R = 2), class b = {C, E} (R = 1), class c = {F} alone.
LINE_POSITIONS = [0.0, 1.0, 2.5, 4.2, 6.0, 100.0]
LINE_LABELS = ["a", "a", "b", "a", "b", "c"]


def line_points() -> np.ndarray:
    return np.array(LINE_POSITIONS)[:, None]


def test_hand_worked_line() -> None:
    # Ranked others (F at 100 is always last) and rel(i) for each query:
    #   A: B C D E → 1 0 1 0   AP@R = (1/2)(1) = 1/2,  R-prec 1/2, AP@n_c = (1/3)(1 + 2/3) = 5/9
    #   B: A C D E → 1 0 1 0   same as A: 1/2, 1/2, 5/9
    #   C: B D A E → 0 0 0 1   AP@R = 0, R-prec 0, AP@n_c (cut 2) = 0;      first hit at rank 4
    #   D: C E B A → 0 0 1 1   AP@R = 0, R-prec 0, AP@n_c (cut 3) = (1/3)(1/3) = 1/9; first hit 3
    #   E: D C B A → 0 1 0 0   AP@R = 0, R-prec 0, AP@n_c (cut 2) = (1/2)(1/2) = 1/4; first hit 2
    #   F is a lone query: excluded, so every mean is over 5 queries.
    metrics = retrieval_metrics(line_points(), np.array(LINE_LABELS), ks=(1, 2, 4))
    assert metrics["recall@1"] == pytest.approx(2 / 5)
    assert metrics["recall@2"] == pytest.approx(3 / 5)
    assert metrics["recall@4"] == pytest.approx(1.0)
    assert metrics["map@r"] == pytest.approx(1 / 5)
    assert metrics["r_precision"] == pytest.approx(1 / 5)
    assert metrics["map_c"] == pytest.approx((5 / 9 + 5 / 9 + 0 + 1 / 9 + 1 / 4) / 5)
    assert metrics["num_lone_queries"] == 1
    assert metrics["num_items"] == 6 and metrics["num_classes"] == 3
    assert metrics["neighbors_searched"] == 4


def test_report_holds_per_query_ap_and_neighbours() -> None:
    report = retrieval_report(line_points(), np.array(LINE_LABELS), ks=(1,), keep_neighbors=2)
    np.testing.assert_allclose(
        report.average_precision_at_r, [0.5, 0.5, 0.0, 0.0, 0.0, np.nan], equal_nan=True
    )
    # Two nearest others of A B C D E F: B C | A C | B D | C E | D C | E D.
    expected_neighbours = [[1, 2], [0, 2], [1, 3], [2, 4], [3, 2], [4, 3]]
    np.testing.assert_array_equal(report.neighbor_indices, expected_neighbours)
    np.testing.assert_allclose(report.neighbor_distances[0], [1.0, 2.5], rtol=1e-6)
    assert report.metrics["map@r"] == pytest.approx(np.nanmean(report.average_precision_at_r))


def test_drop_query_by_index_drops_own_index_or_the_last_column() -> None:
    indices = np.array([[3, 0, 5], [1, 4, 2]])  # row 0 queries item 0 (present); row 1 item 7
    distances = np.array([[0.0, 0.0, 1.0], [0.0, 0.5, 0.9]], dtype=np.float32)
    kept_indices, kept_distances = drop_query_by_index(indices, distances, np.array([0, 7]))
    np.testing.assert_array_equal(kept_indices, [[3, 5], [1, 4]])
    np.testing.assert_array_equal(kept_distances, [[0.0, 1.0], [0.0, 0.5]])


def test_duplicates_never_return_the_query_itself() -> None:
    points = np.zeros((6, 3), dtype=np.float32)  # six identical vectors: every distance ties
    for backend in ("faiss", "torch"):
        indices, distances = leave_one_out_neighbors(points, 5, backend=backend, chunk_size=4)
        for query, row in enumerate(indices):
            assert query not in row
            assert sorted(row) == sorted(set(range(6)) - {query})
        np.testing.assert_array_equal(distances, 0.0)


def random_labelled_points(
    seed: int, num_items: int = 500, dim: int = 8, with_duplicates: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Random points with uneven class sizes, singleton classes and same-class exact duplicates."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 40, size=num_items)
    labels[:5] = np.arange(100, 105)  # five singleton classes
    centers = rng.normal(size=(200, dim))
    points = centers[labels % 200] + 0.8 * rng.normal(size=(num_items, dim))
    if with_duplicates:
        for target in range(10, 40, 3):
            same_class = np.flatnonzero(labels == labels[target])
            points[same_class[-1]] = points[target]
    return points.astype(np.float32), labels


def brute_force_retrieval(
    points: np.ndarray, labels: np.ndarray, ks: tuple[int, ...]
) -> dict[str, float]:
    """Explicit per-query loops over a float64 distance matrix, straight from docs/DESIGN.md §3."""
    points = points.astype(np.float64)
    distances = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))
    recalls = {k: [] for k in ks}
    ap_at_r, r_precision, ap_at_class_size = [], [], []
    for query in range(len(points)):
        others = [j for j in np.argsort(distances[query], kind="stable") if j != query]
        relevant = [1 if labels[j] == labels[query] else 0 for j in others]
        num_relevant = sum(relevant)
        if num_relevant == 0:
            continue
        for k in ks:
            recalls[k].append(1.0 if any(relevant[:k]) else 0.0)

        def average_precision(cut_off: int, relevant: list[int] = relevant) -> float:
            total, hits = 0.0, 0
            for rank in range(1, cut_off + 1):
                if relevant[rank - 1]:
                    hits += 1
                    total += hits / rank
            return total / cut_off

        ap_at_r.append(average_precision(num_relevant))
        r_precision.append(sum(relevant[:num_relevant]) / num_relevant)
        ap_at_class_size.append(average_precision(num_relevant + 1))
    expected = {f"recall@{k}": float(np.mean(recalls[k])) for k in ks}
    expected.update(
        {
            "map@r": float(np.mean(ap_at_r)),
            "r_precision": float(np.mean(r_precision)),
            "map_c": float(np.mean(ap_at_class_size)),
        }
    )
    return expected


def brute_force_pair_f1(labels: np.ndarray, clusters: np.ndarray) -> float:
    true_positive = same_cluster = same_class = 0
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            same_label, same_group = labels[i] == labels[j], clusters[i] == clusters[j]
            true_positive += same_label and same_group
            same_cluster += same_group
            same_class += same_label
    precision, recall = true_positive / same_cluster, true_positive / same_class
    return 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force_reference(seed: int) -> None:
    points, labels = random_labelled_points(seed)
    ks = (1, 2, 4, 8, 16)
    metrics = retrieval_metrics(points, labels, ks=ks)
    expected = brute_force_retrieval(points, labels, ks)
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), key
    assert metrics["num_lone_queries"] == 5
    clusters = kmeans_clusters(points, len(np.unique(labels)))
    assert metrics["nmi"] == pytest.approx(normalized_mutual_info_score(labels, clusters), abs=1e-9)
    assert metrics["f1"] == pytest.approx(brute_force_pair_f1(labels, clusters), abs=1e-9)


def test_pair_counting_f1_matches_sklearn_pair_confusion() -> None:
    rng = np.random.default_rng(3)
    labels, clusters = rng.integers(0, 7, 300), rng.integers(0, 9, 300)
    # sklearn counts ordered pairs: [[TN, FP], [FN, TP]], each twice the unordered count.
    (_, false_positive_twice), (false_negative_twice, true_positive_twice) = pair_confusion_matrix(
        labels, clusters
    )
    precision = true_positive_twice / (true_positive_twice + false_positive_twice)
    recall = true_positive_twice / (true_positive_twice + false_negative_twice)
    expected = 2 * precision * recall / (precision + recall)
    assert pair_counting_f1(labels, clusters) == pytest.approx(expected, abs=1e-12)
    assert pair_counting_f1(labels, labels) == pytest.approx(1.0)
    assert pair_counting_f1(np.array([0, 0, 1, 1]), np.array([0, 1, 2, 3])) == 0.0


def test_kmeans_is_deterministic_with_k_clusters() -> None:
    points, _ = random_labelled_points(4, with_duplicates=False)
    first, second = kmeans_clusters(points, 20), kmeans_clusters(points, 20)
    np.testing.assert_array_equal(first, second)
    assert first.min() >= 0 and first.max() < 20 and len(np.unique(first)) > 10


def test_matches_pytorch_metric_learning() -> None:
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    points, labels = random_labelled_points(5, num_items=600, dim=16, with_duplicates=False)
    calculator = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        k="max_bin_count",
    )
    expected = calculator.get_accuracy(
        torch.from_numpy(points), torch.from_numpy(labels), ref_includes_query=True
    )
    metrics = retrieval_metrics(points, labels)
    assert metrics["recall@1"] == pytest.approx(expected["precision_at_1"], abs=1e-6)
    assert metrics["r_precision"] == pytest.approx(expected["r_precision"], abs=1e-6)
    assert metrics["map@r"] == pytest.approx(expected["mean_average_precision_at_r"], abs=1e-6)


def test_backends_inputs_and_chunks_agree() -> None:
    points, labels = random_labelled_points(6, with_duplicates=False)
    reference = retrieval_metrics(points, labels, knn_backend="faiss")
    variants = [
        retrieval_metrics(points, labels, knn_backend="torch"),
        retrieval_metrics(points, labels, chunk_size=7),
        retrieval_metrics(points, labels, knn_backend="torch", chunk_size=33),
        retrieval_metrics(torch.from_numpy(points), torch.from_numpy(labels)),
        retrieval_metrics(points.astype(np.float64), labels.tolist()),
    ]
    for variant in variants:
        assert variant.keys() == reference.keys()
        for key, value in reference.items():
            assert variant[key] == pytest.approx(value, abs=1e-9), key


def test_torch_and_faiss_neighbours_agree() -> None:
    points, _ = random_labelled_points(7, with_duplicates=False)
    faiss_indices, faiss_distances = leave_one_out_neighbors(points, 10, backend="faiss")
    torch_indices, torch_distances = leave_one_out_neighbors(points, 10, backend="torch")
    np.testing.assert_array_equal(faiss_indices, torch_indices)
    np.testing.assert_allclose(faiss_distances, torch_distances, rtol=1e-4, atol=1e-4)
    exact = np.sqrt(((points[0] - points[faiss_indices[0]]) ** 2).sum(-1))
    np.testing.assert_allclose(faiss_distances[0], exact, rtol=1e-5)


def test_max_k_caps_the_ranked_list_with_a_warning() -> None:
    points, labels = random_labelled_points(8, with_duplicates=False)
    full = retrieval_metrics(points, labels, ks=(1,))
    with pytest.warns(UserWarning, match="max_k=5"):
        capped = retrieval_metrics(points, labels, ks=(1,), max_k=5)
    assert capped["num_truncated_queries"] > 0 and full["num_truncated_queries"] == 0
    assert capped["neighbors_searched"] == 5
    assert capped["map@r"] < full["map@r"]
    assert capped["recall@1"] == full["recall@1"]


@pytest.mark.parametrize("index", ["hnsw", "ivf"])
def test_approximate_index_is_close_to_exact(index: str) -> None:
    rng = np.random.default_rng(9)
    labels = np.repeat(np.arange(40), 50)
    points = (rng.normal(size=(40, 32))[labels] + 0.5 * rng.normal(size=(2000, 32))).astype(
        np.float32
    )
    exact = retrieval_metrics(points, labels, ks=(1,))
    approximate = retrieval_metrics(points, labels, ks=(1,), approximate=index)
    assert approximate["recall@1"] == pytest.approx(exact["recall@1"], abs=0.03)
    assert approximate["map@r"] == pytest.approx(exact["map@r"], abs=0.05)


@pytest.mark.parametrize(
    ("embeddings", "labels", "kwargs", "message"),
    [
        (np.zeros((4, 2)), np.array([0, 0, 1]), {}, "differ in length"),
        (np.array([[0.0, np.nan], [1, 1], [2, 2]]), np.array([0, 0, 1]), {}, "NaN or infinite"),
        (np.array([[0.0, np.inf], [1, 1], [2, 2]]), np.array([0, 0, 1]), {}, "NaN or infinite"),
        (np.zeros((0, 3)), np.zeros(0), {}, "empty"),
        (np.zeros(4), np.array([0, 0, 1, 1]), {}, "2-D"),
        (np.zeros((4, 2, 1)), np.array([0, 0, 1, 1]), {}, "2-D"),
        (np.zeros((4, 2)), np.zeros((4, 1)), {}, "labels must be 1-D"),
        (np.random.rand(4, 2), np.array([3, 3, 3, 3]), {}, "at least two classes"),
        (np.random.rand(4, 2), np.array([0, 1, 2, 3]), {"ks": (1,)}, "single item"),
        (np.random.rand(4, 2), np.array([0, 0, 1, 1]), {"ks": (1, 4)}, "recall ks"),
        (np.random.rand(4, 2), np.array([0, 0, 1, 1]), {"ks": ()}, "recall ks"),
        (np.random.rand(12, 2), np.repeat([0, 1], 6), {"knn_backend": "gpu"}, "kNN backend"),
        (np.random.rand(12, 2), np.repeat([0, 1], 6), {"approximate": "lsh"}, "approximate"),
        (np.random.rand(12, 2), np.repeat([0, 1], 6), {"max_k": 0}, "max_k"),
        (np.array([["a", "b"], ["c", "d"]]), np.array([0, 1]), {}, "real numbers"),
    ],
)
def test_bad_input_raises_a_clear_error(
    embeddings: np.ndarray, labels: np.ndarray, kwargs: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(embeddings, labels, **kwargs)


def test_docstring_examples_run() -> None:
    assert doctest.testmod(retrieval_module).failed == 0


def brute_force_query_gallery(
    points: np.ndarray,
    labels: np.ndarray,
    is_query: np.ndarray,
    is_gallery: np.ndarray,
    ks: tuple[int, ...],
) -> dict[str, float]:
    """Explicit loops: each query ranks the gallery items except itself; R counts the gallery
    items of its class other than itself; queries with R = 0 are lone (skipped, counted)."""
    points = points.astype(np.float64)
    recalls: dict[int, list[float]] = {k: [] for k in ks}
    ap_at_r, r_precision, ap_at_class_size = [], [], []
    lone = 0
    for query in range(len(points)):
        if not is_query[query]:
            continue
        gallery = [j for j in range(len(points)) if is_gallery[j] and j != query]
        distances = [float(np.sqrt(((points[query] - points[j]) ** 2).sum())) for j in gallery]
        ranked = [gallery[i] for i in np.argsort(distances, kind="stable")]
        relevant = [1 if labels[j] == labels[query] else 0 for j in ranked]
        num_relevant = sum(relevant)
        if num_relevant == 0:
            lone += 1
            continue
        for k in ks:
            recalls[k].append(1.0 if any(relevant[:k]) else 0.0)

        def average_precision(cut_off: int, relevant: list[int] = relevant) -> float:
            total, hits = 0.0, 0
            for rank in range(1, min(cut_off, len(relevant)) + 1):
                if relevant[rank - 1]:
                    hits += 1
                    total += hits / rank
            return total / cut_off

        ap_at_r.append(average_precision(num_relevant))
        r_precision.append(sum(relevant[:num_relevant]) / num_relevant)
        ap_at_class_size.append(average_precision(num_relevant + 1))
    expected = {f"recall@{k}": float(np.mean(recalls[k])) for k in ks}
    expected.update(
        {
            "map@r": float(np.mean(ap_at_r)),
            "r_precision": float(np.mean(r_precision)),
            "map_c": float(np.mean(ap_at_class_size)),
            "num_lone_queries": lone,
            "num_queries": int(is_query.sum()),
            "num_gallery": int(is_gallery.sum()),
        }
    )
    return expected


@pytest.mark.parametrize("backend", ["faiss", "torch"])
@pytest.mark.parametrize("seed", [0, 1])
def test_query_gallery_protocol_matches_brute_force(seed: int, backend: str) -> None:
    points, labels = random_labelled_points(seed, num_items=300, with_duplicates=False)
    rng = np.random.default_rng(seed + 10)
    is_query = rng.random(300) < 0.6
    is_gallery = rng.random(300) < 0.7
    is_query[:3] = is_gallery[:3] = True  # items that are both
    is_gallery[labels == labels[7]] = False  # class of item 7: queries without a gallery item
    is_query[7] = True
    ks = (1, 2, 4, 8)
    report = retrieval_report(
        points, labels, ks=ks, is_query=is_query, is_gallery=is_gallery, knn_backend=backend
    )
    expected = brute_force_query_gallery(points, labels, is_query, is_gallery, ks)
    for key, value in expected.items():
        assert report.metrics[key] == pytest.approx(value, abs=1e-6), key
    assert report.metrics["num_lone_queries"] >= 1
    assert np.isnan(report.average_precision_at_r[~is_query]).all()
    kept = report.neighbor_indices[is_query]
    assert is_gallery[kept].all() and (kept != np.flatnonzero(is_query)[:, None]).all()
    assert (report.neighbor_indices[~is_query] == -1).all()
    # All True is leave-one-out exactly, without the query/gallery counts.
    everyone = np.ones(300, dtype=bool)
    plain = retrieval_metrics(points, labels, ks=ks)
    assert retrieval_metrics(points, labels, ks=ks, is_query=everyone, is_gallery=everyone) == plain


def test_query_gallery_protocol_refuses_empty_sides() -> None:
    points = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 0.0], [5.0, 1.0]])
    labels = np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="0 queries and 4 gallery items"):
        retrieval_metrics(points, labels, ks=(1,), is_query=np.zeros(4, dtype=bool))
    with pytest.raises(ValueError, match="no query has an item of its class in the gallery"):
        retrieval_metrics(
            points,
            labels,
            ks=(1,),
            is_query=np.array([True, False, False, False]),
            is_gallery=np.array([False, False, True, True]),
        )
    with pytest.raises(ValueError, match=r"recall ks .* in \[1, 1\]"):
        retrieval_metrics(
            points,
            labels,
            ks=(3,),
            is_query=np.array([True, True, False, False]),
            is_gallery=np.array([True, False, True, False]),
        )
