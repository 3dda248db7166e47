"""The approximate evaluation path (issue 28, scale item 1): HNSW/IVF kNN and sampled k-means agree
with the exact path on small data; the option is validated in one line; the trainer records it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from dml_core.cli import main
from dml_core.config import TrainConfig
from dml_core.engine.checkpoint_header import read_metadata
from dml_core.engine.trainer import Trainer
from dml_core.metrics import clustering, kmeans_clusters, pair_counting_f1, retrieval_metrics
from dml_core.presets import preset

AGREEMENT = 0.01
"""Largest |approximate − exact| accepted here for Recall@k and MAP@R (the bench's 100k and 200k
figures are in BENCHMARKS.md)."""
CLUSTER_AGREEMENT = 0.02
"""The same for the NMI and F1 means over five k-means seeds (one seed's F1 moves by ±0.03 here)."""


def class_data(num_items: int, num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around class centres (d = 32), as ``bench/eval_bench.py`` draws them."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=num_items)
    centres = rng.normal(size=(num_classes, 32))
    points = centres[labels] + 0.8 * rng.normal(size=(num_items, 32))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32), labels


@pytest.fixture(scope="module")
def data_and_exact() -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    points, labels = class_data(3000, 60)
    return points, labels, retrieval_metrics(points, labels)


@pytest.mark.parametrize("index", ["hnsw", "ivf"])
def test_approximate_metrics_agree_with_exact(data_and_exact, index: str) -> None:
    points, labels, exact = data_and_exact
    approximate = retrieval_metrics(points, labels, approximate=index)
    for key in ("recall@1", "recall@8", "map@r", "r_precision", "map_c"):
        assert approximate[key] == pytest.approx(exact[key], abs=AGREEMENT), key
    assert approximate["neighbors_searched"] == exact["neighbors_searched"]


def _mean_scores(points: np.ndarray, labels: np.ndarray, **options) -> np.ndarray:
    """(NMI, F1) averaged over k-means seeds 0-4: on 60 clusters one seed's F1 moves by ±0.03."""
    scores = []
    for seed in range(5):
        clusters = kmeans_clusters(points, 60, seed=seed, **options)
        scores.append(
            (normalized_mutual_info_score(labels, clusters), pair_counting_f1(labels, clusters))
        )
    return np.mean(scores, axis=0)


def test_sampled_kmeans_agrees_with_exact_over_seeds(data_and_exact) -> None:
    """A sample of 20 items per centroid (1,200 of 3,000) trains the centroids, every item is
    assigned, the same seed gives the same clusters, and the mean NMI and F1 match exact's."""
    points, labels, _ = data_and_exact
    assert len(points) > clustering.SAMPLED_POINTS_PER_CENTROID * 60
    sampled = kmeans_clusters(points, 60, approximate="hnsw")
    assert sampled.shape == (3000,) and sampled.min() >= 0 and sampled.max() < 60
    np.testing.assert_array_equal(sampled, kmeans_clusters(points, 60, approximate="hnsw"))
    approximate = _mean_scores(points, labels, approximate="hnsw")
    exact = _mean_scores(points, labels)
    np.testing.assert_allclose(approximate, exact, atol=CLUSTER_AGREEMENT)


def test_bad_index_name_is_one_line() -> None:
    points, labels = class_data(200, 4)
    for call in (
        lambda: retrieval_metrics(points, labels, approximate="lsh"),
        lambda: kmeans_clusters(points, 4, approximate="lsh"),
    ):
        with pytest.raises(ValueError, match=r"^unknown approximate index 'lsh'; valid names: "):
            call()
    with pytest.raises(ValueError, match="eval_approximate must be hnsw, ivf or none, got 'lsh'"):
        TrainConfig(eval_approximate="lsh").validate()


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "--checkpoint", "missing.safetensors", "--approximate", "lsh"],
        ["train", "--preset", "toy", "--eval-approximate", "lsh"],
    ],
)
def test_cli_refuses_a_bad_index_name_in_one_line(tmp_path: Path, capsys, argv) -> None:
    """argparse refuses ``evaluate --approximate lsh``; TrainConfig refuses the train flag."""
    try:
        status = main([*argv, "--out", str(tmp_path / "run")] if argv[0] == "train" else argv)
    except SystemExit as stopped:
        status = stopped.code
    assert status == 2
    stderr = capsys.readouterr().err.strip()
    assert len(stderr.splitlines()) == 1 and "lsh" in stderr
    assert "hnsw" in stderr and "ivf" in stderr


def test_trainer_records_the_option_and_evaluates_with_it(tmp_path: Path) -> None:
    base = {**preset("toy"), "epochs": 2, "eval_every": 2, "max_steps_per_epoch": None}
    config = TrainConfig.from_dict({**base, "eval_approximate": "hnsw"})
    Trainer(config, tmp_path / "approximate").run()
    Trainer(TrainConfig.from_dict(base), tmp_path / "exact").run()
    saved = json.loads((tmp_path / "approximate" / "config.json").read_text())
    assert saved["eval_approximate"] == "hnsw"
    metadata = read_metadata(tmp_path / "approximate" / "last.safetensors")
    assert metadata["config"]["eval_approximate"] == "hnsw"
    exact = read_metadata(tmp_path / "exact" / "last.safetensors")
    assert exact["config"]["eval_approximate"] is None
    approximate_metrics, exact_metrics = metadata["history"][-1], exact["history"][-1]
    for key in ("test/recall@1", "test/map@r", "train/recall@1"):
        assert approximate_metrics[key] == pytest.approx(exact_metrics[key], abs=AGREEMENT), key


def test_evaluate_embeddings_file_with_approximate(tmp_path: Path, capsys) -> None:
    points, labels = class_data(2000, 40, seed=2)
    np.savez(tmp_path / "set.npz", embeddings=points, labels=labels)
    scores = {}
    for option in ([], ["--approximate", "hnsw"]):
        assert main(["evaluate", "--embeddings", str(tmp_path / "set.npz"), *option]) == 0
        scores[bool(option)] = json.loads(capsys.readouterr().out)
    for key in ("test/recall@1", "test/map@r"):
        assert scores[True][key] == pytest.approx(scores[False][key], abs=AGREEMENT), key
