"""The pure analysis behind Inspect and Compare, each against a slow explicit loop."""

from __future__ import annotations

import numpy as np
import pytest

from app import analysis
from app.figures.curves import history_figure
from app.figures.labels import log_axis
from app.figures.palette import FADED, HASHED_COLORS, LONE_COLOR, class_colors
from app.figures.projection import inspect_projection_figure
from app.format import metric_label, metric_order
from dml_core.metrics import retrieval_report


def _clusters(seed: int = 0, classes: int = 6, per_class: int = 7, dim: int = 5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 1.2
    labels = np.repeat(np.arange(classes), per_class)
    points = (centres[labels] + rng.normal(size=(len(labels), dim))).astype(np.float32)
    return points, labels


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5 7", [5, 7]), ("5,7", [5, 7]), (" 5 ,  7 ;9 ", [5, 7, 9]), ("", []), ("3 3", [3])],
)
def test_query_parser_reads_separate_numbers(text: str, expected: list[int]) -> None:
    assert analysis.parse_query_indices(text, 100) == expected


def test_query_parser_names_every_bad_entry() -> None:
    with pytest.raises(ValueError) as caught:
        analysis.parse_query_indices("4000, -1, abc", 100)
    message = str(caught.value)
    assert "'4000' is out of range (0 … 99)" in message
    assert "'-1' is out of range" in message
    assert "'abc' is not a whole number" in message
    with pytest.raises(ValueError, match=r"'2\.5' is not a whole number"):
        analysis.parse_query_indices("1 2.5", 10)


def test_nearest_other_matches_a_loop() -> None:
    points, labels = _clusters()
    labels = labels.copy()
    labels[-1] = 99  # a lone query
    found = analysis.nearest_other(points, labels)
    for i in range(len(labels)):
        distances = [float(np.linalg.norm(points[i] - points[j])) for j in range(len(labels))]
        positives = [d for j, d in enumerate(distances) if j != i and labels[j] == labels[i]]
        negatives = [(d, j) for j, d in enumerate(distances) if labels[j] != labels[i]]
        if positives:
            assert found.positive_distance[i] == pytest.approx(min(positives), abs=1e-4)
        else:
            assert np.isnan(found.positive_distance[i]) and np.isnan(found.gap[i])
        assert found.negative_distance[i] == pytest.approx(min(negatives)[0], abs=1e-4)
        assert labels[found.negative_index[i]] == labels[min(negatives)[1]]


def test_worst_queries_break_ties_by_the_gap() -> None:
    ap = np.array([0.0, 0.0, 0.5, np.nan, 0.0, 0.2])
    gap = np.array([0.1, 0.3, -1.0, 0.0, 0.3, 0.9])
    # AP 0 three times: gap 0.3 (#1, #4: index order), then 0.1 (#0); then AP 0.2, 0.5.
    assert analysis.worst_queries(ap, 10, gap) == [1, 4, 0, 5, 2]
    assert analysis.worst_queries(ap, 2) == [0, 1]  # without a gap: index order


def test_confused_pairs_match_a_loop() -> None:
    points, labels = _clusters(seed=1)
    report = retrieval_report(points, labels, ks=(1,), keep_neighbors=5)
    k = 3
    counts: dict[tuple[int, int], int] = {}
    for query in range(len(labels)):
        for neighbor in report.neighbor_indices[query, :k]:
            if labels[neighbor] != labels[query]:
                pair = (int(labels[query]), int(labels[neighbor]))
                counts[pair] = counts.get(pair, 0) + 1
    pairs = analysis.confused_pairs(labels, report.neighbor_indices, k, top=100)
    assert {(p.query_class, p.retrieved_class): p.count for p in pairs} == counts
    assert [p.count for p in pairs] == sorted(counts.values(), reverse=True)
    for pair in pairs:
        assert labels[pair.example_query] == pair.query_class
        assert labels[pair.example_neighbor] == pair.retrieved_class
        assert pair.example_neighbor in report.neighbor_indices[pair.example_query, :k]
        assert pair.share == pytest.approx(pair.count / (np.sum(labels == pair.query_class) * k))


def test_hit_at_1_is_recall_at_1_per_query() -> None:
    points, labels = _clusters(seed=2)
    report = retrieval_report(points, labels, ks=(1,), keep_neighbors=3)
    hits = analysis.hit_at_1(report, labels)
    assert np.nanmean(hits) == pytest.approx(report.metrics["recall@1"])


def test_per_class_delta_matches_a_loop() -> None:
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(4), 5)
    a, b = rng.random(20), rng.random(20)
    a[3] = np.nan
    rows = analysis.per_class_delta(labels, a, b, ["w", "x", "y", "z"])
    for row in rows:
        members = [i for i in range(20) if labels[i] == row["label"] and not np.isnan(a[i])]
        assert row["A"] == pytest.approx(np.mean(a[members]))
        assert row["B"] == pytest.approx(np.mean(b[members]))
        assert row["Δ (B − A)"] == pytest.approx(row["B"] - row["A"])
        assert row["queries"] == len(members)
    deltas = [row["Δ (B − A)"] for row in rows]
    assert deltas == sorted(deltas, reverse=True)


def test_disagreements_match_a_loop() -> None:
    rng = np.random.default_rng(4)
    a = rng.integers(0, 2, 50).astype(float)
    b = rng.integers(0, 2, 50).astype(float)
    a[7] = np.nan
    only_a, only_b = analysis.disagreements(a, b)
    assert only_a == [i for i in range(50) if a[i] == 1 and b[i] == 0]
    assert only_b == [i for i in range(50) if b[i] == 1 and a[i] == 0]
    assert 7 not in only_a + only_b


def test_per_item_problem_names_differing_datasets_and_items() -> None:
    labels = np.array([0, 0, 1, 1])
    assert analysis.per_item_problem(["s", "s"], [labels, labels.copy()], ["a", "b"]) is None
    assert "datasets differ" in analysis.per_item_problem(["s", "t"], [labels, labels], ["a", "b"])
    problem = analysis.per_item_problem(["s", "s"], [labels, labels[:3]], ["a", "b"])
    assert "other items" in problem


DOCUMENTED_ORDER = [
    "recall@1", "recall@2", "recall@4", "recall@8", "recall@16",
    "map@r", "r_precision", "map_c", "nmi", "f1",
    "rho@1", "rho@2", "pi_intra", "pi_inter", "pi_ratio", "uniformity",
    "accuracy", "zeta",
    "num_items", "num_classes", "num_lone_queries", "num_truncated_queries", "neighbors_searched",
]  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metric_order_restores_the_documented_order_from_any_shuffle(seed: int) -> None:
    shuffled = list(DOCUMENTED_ORDER)
    np.random.default_rng(seed).shuffle(shuffled)
    assert shuffled != DOCUMENTED_ORDER
    assert metric_order(shuffled) == DOCUMENTED_ORDER  # unknown names kept, by name
    prefixed = metric_order(["test/" + name for name in reversed(DOCUMENTED_ORDER)])
    assert prefixed == ["test/" + name for name in DOCUMENTED_ORDER]


def test_metric_order_keeps_splits_of_one_metric_together() -> None:
    keys = ["val/map@r", "test/num_items", "test/map@r", "val/recall@1", "test/recall@1"]
    assert metric_order(keys) == [
        "test/recall@1", "val/recall@1", "test/map@r", "val/map@r", "test/num_items",
    ]  # fmt: skip


def test_metric_label_names_counts_and_keeps_metrics() -> None:
    assert metric_label("test/num_lone_queries") == "test/lone queries (class of one)"
    assert metric_label("num_items") == "items"
    assert metric_label("test/recall@1") == "test/recall@1"


def test_best_result_and_history_are_tables() -> None:
    rows = analysis.best_result_rows({"epoch": 8, "metric": "test/recall@1", "value": 0.5})
    assert {row[""]: row["value"] for row in rows} == {
        "at epoch": "8", "selected on": "test/recall@1", "best value": "0.5000",
    }  # fmt: skip
    history = [{"epoch": 1, "test/map@r": 0.1, "test/recall@1": 0.3, "test/num_items": 9}]
    table = analysis.history_rows(history)
    assert [row["metric"] for row in table] == ["test/recall@1", "test/map@r"]
    assert table[0]["epoch 1"] == 0.3


def test_history_figure_gives_each_metric_its_own_axis() -> None:
    history = [{"epoch": 1, "test/map@r": 0.1, "train/pi_ratio": 2.0}]
    figure = history_figure(history, ["test/map@r", "train/pi_ratio"])
    assert [trace.yaxis for trace in figure.data] == ["y", "y2"]
    assert tuple(figure.layout.yaxis.range) == (0, 1.02)


def test_log_axis_labels_decades_only() -> None:
    settings = log_axis([0.5, 0.001])
    assert settings["dtick"] == 1 and settings["type"] == "log"
    narrow = log_axis([0.3, 0.2])
    assert log_axis([0.17, 0.02])["ticktext"] == ["0.01", "0.02", "0.05", "0.1", "0.2"]
    assert narrow["ticktext"] == ["0.1", "0.2", "0.5"]  # written out, not "2" and "5"


def test_projection_figure_has_a_legend_per_colour_mode_and_item_customdata() -> None:
    points, labels = _clusters(seed=5, classes=3, per_class=4)
    coordinates = points[:, :2]
    report = retrieval_report(points, labels, ks=(1,), keep_neighbors=3)
    hits = analysis.hit_at_1(report, labels)
    by_class = inspect_projection_figure(coordinates, labels, ["a", "b", "c"])
    assert [t.name for t in by_class.data] == ["classes", "a", "b", "c"]  # one trace + legend
    points_trace = by_class.data[0]
    assert points_trace.type == "scattergl" and list(points_trace.customdata) == list(range(12))
    assert list(points_trace.marker.color) == list(labels)  # a colour array, one per item
    assert all(t.x == (None,) for t in by_class.data[1:])  # legend lines without points
    by_hit = inspect_projection_figure(
        coordinates, labels, ["a", "b", "c"], color_by="Recall@1 hit/miss", hits=hits,
        shown_classes=[0], selected=2, neighbors=[1, 3],
    )  # fmt: skip
    names = [t.name for t in by_hit.data]
    assert names[0] == "other classes" and names[-1] == "selected #2"
    assert list(by_hit.data[-1].customdata) == [2]
    assert by_hit.layout.dragmode is None  # Streamlit's pan mode: a click selects


def test_projection_figure_colours_by_ap_and_by_nearest_wrong_class() -> None:
    points, labels = _clusters(seed=6, classes=3, per_class=4)
    coordinates = points[:, :2]
    average_precision = np.linspace(0, 1, 12)
    average_precision[5] = np.nan  # a lone query
    by_ap = inspect_projection_figure(
        coordinates, labels, ["a", "b", "c"], color_by="AP@R", average_precision=average_precision
    )
    scale, lone = by_ap.data
    assert scale.marker.cmin == 0 and scale.marker.cmax == 1 and not scale.showlegend
    np.testing.assert_allclose(scale.marker.color, np.delete(average_precision, 5))
    assert lone.name == "lone query" and list(lone.customdata) == [5]
    assert lone.marker.color == LONE_COLOR

    nearest = np.array([4, 4, 8, -1, 0, 0, 8, 8, 0, 0, 4, 4])  # item of the nearest other class
    by_wrong = inspect_projection_figure(
        coordinates, labels, ["a", "b", "c"], color_by="nearest wrong class",
        nearest_wrong=nearest, shown_classes=[0, 1],
    )  # fmt: skip
    names = [trace.name for trace in by_wrong.data]
    assert names == ["other classes", "nearest wrong", "nearest wrong: none", "nearest wrong: a",
                     "nearest wrong: b", "nearest wrong: c"]  # fmt: skip
    assert by_wrong.data[0].marker.color == FADED and list(by_wrong.data[0].customdata) == list(
        range(8, 12)
    )
    colours = class_colors(3)
    assert [t.marker.color for t in by_wrong.data[3:]] == colours
    wrong = by_wrong.data[1]  # each item in the colour of its nearest wrong item's class
    assert list(wrong.marker.color) == [int(labels[nearest[i]]) for i in wrong.customdata]
    assert sorted(int(i) for t in by_wrong.data[1:3] for i in t.customdata) == list(range(8))
    # without nearest-wrong data the points keep their class colours and names
    fallback = inspect_projection_figure(
        coordinates, labels, ["a", "b", "c"], color_by="nearest wrong class"
    )
    assert [t.name for t in fallback.data] == ["classes", "a", "b", "c"]


def test_many_classes_are_one_webgl_trace_without_a_legend() -> None:
    """12,000 classes: one colour-array trace, no legend line per class, hashed colours, and the
    hover text decimated to the class name (the index comes from customdata)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 12_000, size=30_000)
    names = [f"product {c}" for c in range(12_000)]
    figure = inspect_projection_figure(rng.normal(size=(30_000, 2)), labels, names)
    assert len(figure.data) == 1 and figure.data[0].type == "scattergl"
    trace = figure.data[0]
    assert trace.marker.color.max() < HASHED_COLORS and trace.marker.color.dtype == np.uint8
    assert trace.text[0] == f"product {labels[0]}" and "%{customdata}" in trace.hovertemplate
    neighbours = inspect_projection_figure(
        rng.normal(size=(30_000, 2)), labels, names, selected=4, neighbors=[1, 2],
        shown_classes=[int(labels[0])],
    )  # fmt: skip
    assert [t.name for t in neighbours.data] == [
        "other classes", "classes", "its neighbours", "selected #4"
    ]  # fmt: skip


def test_nearest_other_from_the_report_matches_the_exact_search() -> None:
    """Read off the kept neighbours (with the exact search only where they hold no positive or
    no negative), the nearest positive and negative are those of the exact search."""
    points, labels = _clusters(seed=9, classes=12, per_class=7)
    labels[:3] = 99  # a class of three, and one lone item
    labels[3] = 98
    for keep in (2, 8):
        report = retrieval_report(points, labels, ks=(1,), keep_neighbors=keep)
        fast = analysis.nearest_other_from_report(report, points, labels)
        exact = analysis.nearest_other(points, labels)
        np.testing.assert_allclose(fast.positive_distance, exact.positive_distance, rtol=1e-4)
        np.testing.assert_allclose(fast.negative_distance, exact.negative_distance, rtol=1e-4)
        np.testing.assert_array_equal(fast.negative_index, exact.negative_index)
        assert np.isnan(fast.positive_distance[3])
