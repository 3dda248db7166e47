"""The ``csv`` dataset (open-metric-learning's dataset CSV): splits, boxes, query/gallery masks, bad
files in one line, and a run that trains and evaluates under the query/gallery protocol."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from app.analysis import analyse_split, random_queries
from app.sources import opened_from_evaluation
from dml_core.cli import main
from dml_core.data import build_dataset
from dml_core.engine.checkpoint_header import read_metadata
from dml_core.engine.evaluation import embed_checkpoint
from dml_core.engine.stored_section import read_evaluation
from dml_core.interop import read_embeddings
from dml_core.metrics import retrieval_metrics

COLUMNS = [
    "label",
    "path",
    "split",
    "is_query",
    "is_gallery",
    "category",
    "x_1",
    "x_2",
    "y_1",
    "y_2",
]


def write_oml(tmp_path: Path, *, classes: int = 6, per_class: int = 4) -> Path:
    """A tiny image tree and its OML CSV: the first half of the classes train, the rest
    validation with every other item a query only and the rest gallery only; item 0 has a box."""
    rng = np.random.default_rng(0)
    rows = []
    for label in range(classes):
        colour = rng.integers(0, 255, size=3)
        validation = label >= classes // 2
        for item in range(per_class):
            relative = Path("images") / f"c{label}" / f"{item}.png"
            (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
            pixels = np.clip(colour + rng.normal(0, 20, size=(24, 24, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / relative)
            query = item % 2 == 0
            rows.append(
                {
                    "label": label,
                    "path": str(relative),
                    "split": "validation" if validation else "train",
                    "is_query": ("True" if query else "False") if validation else "",
                    "is_gallery": ("False" if query else "True") if validation else "",
                    "category": "things",
                    **(
                        {"x_1": 2, "x_2": 14, "y_1": 4, "y_2": 20}
                        if label == 0 and item == 0
                        else {c: "" for c in ("x_1", "x_2", "y_1", "y_2")}
                    ),
                }
            )
    table = tmp_path / "dataset.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return table


def test_splits_boxes_and_masks(tmp_path: Path) -> None:
    table = write_oml(tmp_path)
    train = build_dataset("csv", table, "train", image_size=16)
    test = build_dataset("csv", table, "test", image_size=16)
    assert (len(train), train.num_classes, len(test), test.num_classes) == (12, 3, 12, 3)
    assert train.is_query is None and test.is_query.tolist() == [True, False] * 6
    assert (test.is_query ^ test.is_gallery).all()
    assert train.boxes[0] == [2.0, 4.0, 14.0, 20.0] and train.boxes[1] is None
    image, label, index = train[0]
    assert image.shape == (3, 16, 16) and (label, index) == (0, 0)
    assert train.thumbnail(0, 8).size == (8, 8)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"split": "holdout"}, r"dataset\.csv line 2: split 'holdout' is not train or validation"),
        ({"path": "images/none.png"}, r"dataset\.csv line 2: image 'images/none\.png' not found"),
        ({"split": "validation", "is_query": "perhaps", "is_gallery": "1"}, r"line 2: 'perhaps'"),
        ({"label": "cat"}, r"dataset\.csv line 2: invalid literal"),
    ],
)
def test_bad_rows_are_one_line(tmp_path: Path, change: dict, message: str) -> None:
    table = write_oml(tmp_path)
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[0].update(change)
    with open(table, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(ValueError, match=message):
        build_dataset("csv", table, "test")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch on the tiny OML tree; the run folder (its checkpoints store their evaluation)."""
    folder = tmp_path_factory.mktemp("oml")
    table = write_oml(folder)
    out = folder / "run"
    argv = ["train", "--dataset", "csv", "--data-root", str(table), "--arch", "small_cnn"]
    argv += ["--pretrained", "none", "--image-size", "16", "--epochs", "1", "--batch-size", "6"]
    argv += ["--eval-ks", "1", "2", "--out", str(out), "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    return out


@pytest.mark.slow
def test_trains_one_epoch_and_evaluates_with_query_gallery(
    trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(trained_run / "last.safetensors")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["test/num_queries"] == 6 and metrics["test/num_gallery"] == 6
    embedded = embed_checkpoint(trained_run / "last.safetensors", "test", device="cpu")
    np.testing.assert_array_equal(embedded.is_query, embedded.dataset.is_query[embedded.indices])
    expected = retrieval_metrics(
        embedded.embeddings,
        np.asarray(embedded.labels),
        ks=(1, 2),
        is_query=np.array([True, False] * 6),  # write_oml: every other validation item
        is_gallery=np.array([False, True] * 6),
    )
    for key in ("recall@1", "map@r", "num_lone_queries"):
        assert metrics[f"test/{key}"] == pytest.approx(expected[key]), key
    events = [json.loads(line) for line in (trained_run / "events.jsonl").read_text().splitlines()]
    evaluation = next(e for e in events if e["kind"] == "eval")
    assert evaluation["metrics"]["test/num_queries"] == 6  # the trainer's evaluation too
    assert torch.isfinite(embedded.embeddings).all()


@pytest.mark.slow
def test_stored_evaluation_app_and_export_follow_the_masks(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = trained_run / "last.safetensors"
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--splits", "test"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    stored = read_evaluation(checkpoint)  # written by the trainer at the end of the run
    assert stored is not None
    np.testing.assert_array_equal(stored.is_query, [True, False] * 6)
    np.testing.assert_array_equal(stored.is_gallery, [False, True] * 6)
    for key in ("recall@1", "recall@2", "map@r", "num_queries", "num_gallery"):
        assert stored.metrics[f"test/{key}"] == pytest.approx(evaluated[f"test/{key}"], abs=1e-6)
    # The app's per-query views: only the queries have neighbours and AP@R, from the gallery.
    opened = opened_from_evaluation(stored, read_metadata(checkpoint)["config"])
    np.testing.assert_array_equal(opened.is_query, stored.is_query)
    metrics, report = analyse_split(
        opened.embeddings, opened.labels, (1, 2), 8, opened.is_query, opened.is_gallery
    )
    assert metrics["num_queries"] == 6 and metrics["recall@1"] == pytest.approx(
        stored.metrics["test/recall@1"],
        abs=1e-3,  # float16 embeddings in the section
    )
    querying = report.neighbor_indices[:, 0] >= 0
    np.testing.assert_array_equal(querying, stored.is_query)
    np.testing.assert_array_equal(np.isfinite(report.average_precision_at_r), stored.is_query)
    assert stored.is_gallery[report.neighbor_indices[querying]].all()
    assert set(random_queries(12, 4, 0, np.flatnonzero(querying))) <= set(np.flatnonzero(querying))
    # An export writes the masks as columns and reads back with them; AP@R only on queries.
    for fmt, name in (("csv", "embeddings.csv"), ("parquet", "embeddings.parquet")):
        assert main(["export", str(checkpoint), "--format", fmt, "--out", str(tmp_path / fmt)]) == 0
        record = read_embeddings(tmp_path / fmt / name)
        np.testing.assert_array_equal(record.is_query, stored.is_query)
        np.testing.assert_array_equal(record.is_gallery, stored.is_gallery)
    table = pd.read_csv(tmp_path / "csv" / "embeddings.csv")
    assert table["ap_at_r"].notna().tolist() == stored.is_query.tolist()
