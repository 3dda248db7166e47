"""Exports: TensorBoard's projector layout read back with TensorBoard's own code, parquet and CSV
read back by ``read_embeddings`` with the same metrics, and a checkpoint exported and re-evaluated."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from dml_core.config import TrainConfig
from dml_core.engine.evaluation import evaluate_checkpoint
from dml_core.engine.trainer import Trainer
from dml_core.interop import (
    evaluate_embeddings,
    export,
    export_embeddings,
    make_embedding_set,
    per_item_values,
    read_embeddings,
)
from dml_core.presets import preset


def blobs(num_classes: int = 4, per_class: int = 6, dim: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, dim)) * 2
    labels = np.repeat(np.arange(num_classes), per_class)
    embeddings = centres[labels] + rng.normal(size=(len(labels), dim))
    return embeddings.astype(np.float32), labels


def with_images(tmp_path: Path) -> Path:
    """An .npz whose items point at small PNGs beside it (one path missing on purpose)."""
    embeddings, labels = blobs()
    (tmp_path / "images").mkdir()
    paths = []
    for i, label in enumerate(labels):
        paths.append(f"images/{i}.png")
        if i != 3:
            Image.new("RGB", (20, 12), (60 * int(label), 10 * i, 200)).save(tmp_path / paths[-1])
    np.savez(
        tmp_path / "set.npz",
        embeddings=embeddings,
        labels=labels,
        paths=np.array(paths),
        class_names=np.array(["a\tb", "c", "d", "e"]),
    )
    return tmp_path / "set.npz"


def test_tensorboard_projector_layout_loads_in_tensorboards_reader(tmp_path: Path) -> None:
    from google.protobuf import text_format
    from tensorboard.plugins.projector import projector_plugin
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    source = with_images(tmp_path)
    out = tmp_path / "projector"
    files = export(source, "tensorboard", out)
    assert {f.name for f in files} == {
        "tensors.tsv",
        "metadata.tsv",
        "sprite.png",
        "projector_config.pbtxt",
    }
    config = text_format.Parse((out / "projector_config.pbtxt").read_text(), ProjectorConfig())
    (embedding,) = config.embeddings
    tensors = projector_plugin._read_tensor_tsv_file(str(out / embedding.tensor_path))
    record = read_embeddings(source)
    assert np.array_equal(tensors, record.embeddings)
    metadata = (out / embedding.metadata_path).read_text().splitlines()
    assert metadata[0].split("\t") == [
        "id",
        "label",
        "class_name",
        "path",
        "ap_at_r",
        "hit_at_1",
    ]
    assert len(metadata) == len(record) + 1
    assert metadata[1].split("\t")[:4] == ["0", "0", "a b", "images/0.png"]
    sprite = Image.open(out / embedding.sprite.image_path)
    size = list(embedding.sprite.single_image_dim)
    per_side = math.ceil(math.sqrt(len(record)))
    assert size[0] == size[1] and sprite.size == (per_side * size[0], per_side * size[1])
    missing_tile = sprite.getpixel((3 * size[0] + 1, 1))  # item 3 has no file: grey
    assert missing_tile == (128, 128, 128)
    assert sprite.getpixel((2 * size[0] + size[0] // 2, size[0] // 2)) == (0, 20, 200)


def test_tensorboard_without_images_has_no_sprite(tmp_path: Path) -> None:
    embeddings, labels = blobs()
    files = export_embeddings(make_embedding_set(embeddings, labels), "tensorboard", tmp_path)
    assert "sprite.png" not in {f.name for f in files}
    assert "sprite" not in (tmp_path / "projector_config.pbtxt").read_text()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_table_round_trip_keeps_embeddings_and_metrics(tmp_path: Path, fmt: str) -> None:
    source = with_images(tmp_path)
    record = read_embeddings(source)
    (exported,) = export(source, fmt, tmp_path / "out")
    again = read_embeddings(exported)
    assert np.array_equal(again.embeddings, record.embeddings)
    assert again.labels.tolist() == record.labels.tolist()
    assert again.class_names == record.class_names
    assert again.paths.tolist() == record.paths.tolist()
    metrics = evaluate_embeddings(record)
    assert evaluate_embeddings(again) == metrics
    if fmt == "parquet":
        table = pq.read_table(exported).to_pydict()
        average_precision = np.array(table["ap_at_r"], dtype=float)
        hit_at_1 = np.array(table["hit_at_1"], dtype=float)
    else:
        values = per_item_values(again)
        average_precision, hit_at_1 = values.average_precision_at_r, values.hit_at_1
    assert math.isclose(np.nanmean(average_precision), metrics["test/map@r"], rel_tol=1e-9)
    assert math.isclose(np.nanmean(hit_at_1), metrics["test/recall@1"], rel_tol=1e-9)


def test_csv_columns_are_notebook_friendly(tmp_path: Path) -> None:
    embeddings, labels = blobs(dim=3)
    (path,) = export_embeddings(make_embedding_set(embeddings, labels), "csv", tmp_path)
    header = path.read_text().splitlines()[0].split(",")
    assert header == [
        "id",
        "label",
        "class_name",
        "path",
        "embedding_0",
        "embedding_1",
        "embedding_2",
        "pca_x",
        "pca_y",
        "ap_at_r",
        "hit_at_1",
    ]


def test_lone_queries_have_no_per_query_values() -> None:
    embeddings, labels = blobs()
    labels = labels.copy()
    labels[0] = 9  # a class of one item
    values = per_item_values(make_embedding_set(embeddings, labels))
    assert math.isnan(values.average_precision_at_r[0]) and math.isnan(values.hit_at_1[0])
    assert not np.isnan(values.average_precision_at_r[1:]).any()
    assert set(np.unique(values.hit_at_1[1:])) <= {0.0, 1.0}


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    embeddings, labels = blobs()
    with pytest.raises(ValueError, match="choose one of tensorboard, parquet, csv"):
        export_embeddings(make_embedding_set(embeddings, labels), "xlsx", tmp_path)


def test_checkpoint_export_round_trip_gives_the_checkpoints_metrics(tmp_path: Path) -> None:
    config = TrainConfig.from_dict(
        {**preset("toy"), "epochs": 4, "eval_every": 2, "checkpoint_every": 2}
    )
    Trainer(config, tmp_path / "run").run()
    checkpoint = tmp_path / "run" / "last.safetensors"
    (exported,) = export(checkpoint, "parquet", tmp_path / "out", device="cpu")
    record = read_embeddings(exported)
    assert record.split_names() == ["test"]
    expected = evaluate_checkpoint(checkpoint, splits=("test",), device="cpu")
    assert evaluate_embeddings(record, ks=config.eval_ks) == pytest.approx(expected, rel=1e-6)
    files = export(checkpoint, "tensorboard", tmp_path / "projector", device="cpu")
    assert "sprite.png" in {f.name for f in files}, "the toy draws thumbnails"


def test_cli_export_prints_the_files_and_refuses_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dml_core.cli import main

    embeddings, labels = blobs()
    np.save(tmp_path / "vectors.npy", embeddings)
    np.save(tmp_path / "labels.npy", labels)
    out = tmp_path / "out"
    argv = ["export", str(tmp_path / "vectors.npy"), "--labels", str(tmp_path / "labels.npy")]
    assert main([*argv, "--format", "csv", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["files"] == [str(out / "embeddings.csv")]
    assert read_embeddings(out / "embeddings.csv").labels.tolist() == labels.tolist()
    labels_short = tmp_path / "short.npy"
    np.save(labels_short, labels[:-1])
    bad = ["export", str(tmp_path / "vectors.npy"), "--labels", str(labels_short)]
    assert main([*bad, "--format", "csv", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "labels has 23 entries" in error
