"""Embedding files made elsewhere: every format read into the same record, every bad file refused
with one clear line, and ``evaluate --embeddings`` printing what ``evaluate --checkpoint`` does."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from dml_core.cli import main
from dml_core.engine.evaluation import split_metrics
from dml_core.interop import evaluate_embeddings, make_embedding_set, read_embeddings


def blobs(num_classes: int = 4, per_class: int = 6, dim: int = 5, seed: int = 0):
    """Classes around separate random centres: (embeddings float32 (N, d), labels (N,))."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, dim)) * 4
    labels = np.repeat(np.arange(num_classes), per_class)
    embeddings = centres[labels] + rng.normal(size=(len(labels), dim))
    return embeddings.astype(np.float32), labels


def test_npz_with_every_optional_array(tmp_path: Path) -> None:
    embeddings, labels = blobs()
    names = np.array(["heron", "wren", "kite", "owl"])
    path = tmp_path / "set.npz"
    np.savez(
        path,
        embeddings=embeddings,
        labels=labels + 10 * 0,
        ids=np.array([f"img{i:03d}" for i in range(len(labels))]),
        paths=np.array([f"images/{i}.png" for i in range(len(labels))]),
        class_names=names,
        split=np.array("test"),
    )
    record = read_embeddings(path)
    assert record.embeddings.dtype == np.float32 and np.array_equal(record.embeddings, embeddings)
    assert record.labels.tolist() == labels.tolist()
    assert record.class_names == tuple(names)
    assert record.ids[3] == "img003" and record.split_names() == ["test"]
    assert record.image_path(2) == tmp_path / "images" / "2.png"


def test_labels_are_reindexed_and_named(tmp_path: Path) -> None:
    embeddings, labels = blobs()
    path = tmp_path / "set.npz"
    np.savez(path, embeddings=embeddings, labels=labels * 7 + 101)
    record = read_embeddings(path)
    assert record.labels.tolist() == labels.tolist()
    assert record.class_names == ("101", "108", "115", "122")


def test_npy_with_sibling_and_explicit_labels(tmp_path: Path) -> None:
    embeddings, labels = blobs()
    np.save(tmp_path / "vectors.npy", embeddings)
    with pytest.raises(ValueError, match=r"vectors\.labels\.npy"):
        read_embeddings(tmp_path / "vectors.npy")
    names = ["cat", "dog", "eel", "fox"]
    (tmp_path / "vectors.labels.txt").write_text("\n".join(names[k] for k in labels) + "\n")
    record = read_embeddings(tmp_path / "vectors.npy")
    assert record.class_names == tuple(names) and record.labels.tolist() == labels.tolist()
    np.save(tmp_path / "other_labels.npy", labels)
    explicit = read_embeddings(tmp_path / "vectors.npy", labels=tmp_path / "other_labels.npy")
    assert explicit.class_names == ("0", "1", "2", "3")


def test_parquet_list_column_and_csv_numbered_columns_agree(tmp_path: Path) -> None:
    embeddings, labels = blobs()
    names = np.array(["a", "b", "c", "d"])[labels]
    pq.write_table(
        pa.table(
            {
                "label": pa.array(names),
                "embedding": pa.array(embeddings.tolist(), type=pa.list_(pa.float32())),
                "path": pa.array([f"{i}.jpg" for i in range(len(labels))]),
                "score": pa.array(np.zeros(len(labels))),  # an unrelated column is ignored
            }
        ),
        tmp_path / "set.parquet",
    )
    header = ",".join(["id", "label", *(f"e{j}" for j in range(embeddings.shape[1]))])
    lines = [header] + [
        ",".join([f"0{i}", name, *(repr(float(v)) for v in row)])
        for i, (name, row) in enumerate(zip(names, embeddings, strict=True))
    ]
    (tmp_path / "set.csv").write_text("\n".join(lines) + "\n")
    from_parquet = read_embeddings(tmp_path / "set.parquet")
    from_csv = read_embeddings(tmp_path / "set.csv")
    for record in (from_parquet, from_csv):
        assert np.array_equal(record.embeddings, embeddings)
        assert record.class_names == ("a", "b", "c", "d")
        assert record.labels.tolist() == labels.tolist()
    assert from_csv.ids[1] == "01", "ids stay text (leading zeros kept)"
    assert from_parquet.paths[0] == "0.jpg" and from_csv.paths is None
    assert evaluate_embeddings(from_parquet) == evaluate_embeddings(from_csv)


def test_csv_with_a_list_column_and_pandas_style_columns(tmp_path: Path) -> None:
    embeddings, labels = blobs(dim=3)
    listed = ["label,embedding"] + [
        f'{k},"[{", ".join(repr(float(v)) for v in row)}]"'
        for k, row in zip(labels, embeddings, strict=True)
    ]
    (tmp_path / "listed.csv").write_text("\n".join(listed) + "\n")
    pandas_style = [",label,0,1,2"] + [
        ",".join([str(i), str(k), *(repr(float(v)) for v in row)])
        for i, (k, row) in enumerate(zip(labels, embeddings, strict=True))
    ]
    (tmp_path / "pandas.csv").write_text("\n".join(pandas_style) + "\n")
    for name in ("listed.csv", "pandas.csv"):
        record = read_embeddings(tmp_path / name)
        assert np.array_equal(record.embeddings, embeddings), name
        assert record.labels.tolist() == labels.tolist()


def _write_npz(path: Path, **arrays: object) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": np.arange(23) % 4}, "labels has 23 entries but there are 24 embeddings"),
        (
            {"embeddings": "nan_row"},
            r"1 embedding row\(s\) hold NaN or infinite values, e\.g\. rows \[5\]",
        ),
        ({"embeddings": np.full((24, 3), "x")}, "embeddings must be real numbers .* got dtype <U1"),
        ({"embeddings": np.zeros((24, 2), dtype=complex)}, "got dtype complex128"),
        (
            {"embeddings": np.zeros(24, dtype=np.float32)},
            r"must be a 2-D array .* got shape \(24,\)",
        ),
        ({"labels": np.zeros(24, dtype=int)}, "at least two classes .* every item has label '0'"),
        ({"labels": np.full(24, 0.5)}, "float labels must be whole numbers"),
        (
            {"ids": np.array([1, 2, 3, *range(3, 24)])},
            "ids must be unique; 1 repeat, e.g. '3' appears 2 times",
        ),
        ({"labels": np.array([[0, 1]] * 12)}, r"labels must be 1-D .* got shape \(12, 2\)"),
    ],
)
def test_bad_files_are_refused_with_one_line(tmp_path: Path, change: dict, message: str) -> None:
    embeddings, labels = blobs()
    arrays = {"embeddings": embeddings, "labels": labels, **change}
    if isinstance(arrays["embeddings"], str):
        arrays["embeddings"] = embeddings.copy()
        arrays["embeddings"][5, 2] = np.nan
    path = _write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message) as error:
        read_embeddings(path)
    assert "\n" not in str(error.value) and str(error.value).startswith(str(path))


def test_pickled_object_arrays_are_never_loaded(tmp_path: Path) -> None:
    embeddings, labels = blobs()
    path = tmp_path / "objects.npz"
    np.savez(path, embeddings=embeddings, labels=labels.astype(object))
    with pytest.raises(ValueError, match="holds Python objects"):
        read_embeddings(path)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"e0": [1.0, 2.0], "e1": [0.0, 1.0]}, "no 'label' column"),
        ({"label": [0, 1], "x": [1.0, 2.0]}, "no embedding columns"),
        ({"label": [0, 1], "e0": [1.0, None]}, "empty cells"),
        ({"label": [0, 1], "e0": [1.0, 2.0], "f0": [1.0, 2.0]}, "several prefixes"),
    ],
)
def test_bad_tables_are_refused(tmp_path: Path, table: dict, message: str) -> None:
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table(table), path)
    with pytest.raises(ValueError, match=message):
        read_embeddings(path)


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match=r"must be \.npz, \.npy, \.parquet, \.csv"):
        read_embeddings(tmp_path / "x.json")
    with pytest.raises(FileNotFoundError):
        read_embeddings(tmp_path / "absent.npz")


def test_metrics_per_split_match_the_engine(tmp_path: Path) -> None:
    embeddings, labels = blobs(per_class=8)
    split = np.where(np.arange(len(labels)) % 2 == 0, "test", "eval_train")
    record = make_embedding_set(embeddings, labels, split=split)
    metrics = evaluate_embeddings(record)
    test_rows = split == "test"
    expected = split_metrics(
        "test", torch.from_numpy(embeddings[test_rows]), labels[test_rows], [1, 2, 4, 8]
    )
    assert {k: v for k, v in metrics.items() if k.startswith("test/")} == expected
    train_rows = ~test_rows
    expected_train = split_metrics(
        "train", torch.from_numpy(embeddings[train_rows]), labels[train_rows], [1, 2, 4, 8]
    )
    assert {k: v for k, v in metrics.items() if k.startswith("train/")} == expected_train
    assert "train/rho@2" in metrics and "train/recall@1" in metrics  # no MAP@R/NMI on train
    assert "train/map@r" not in metrics
    assert 0.0 <= metrics["test/recall@1"] <= 1.0


def test_evaluate_embeddings_prints_what_evaluate_checkpoint_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tiny toy run; its test split embedded to .npz; both evaluate commands print the same JSON."""
    assert (
        main(
            [
                "train",
                "--preset",
                "toy",
                "--epochs",
                "4",
                "--eval-every",
                "2",
                "--out",
                str(tmp_path / "run"),
                "--no-progress",
            ]
        )
        == 0
    )
    checkpoint = str(tmp_path / "run" / "last.safetensors")
    npz = str(tmp_path / "test.npz")
    assert main(["embed", "--checkpoint", checkpoint, "--split", "test", "--out", npz]) == 0
    capsys.readouterr()
    main(["evaluate", "--checkpoint", checkpoint, "--splits", "test", "--device", "cpu"])
    from_checkpoint = json.loads(capsys.readouterr().out)
    main(["evaluate", "--embeddings", npz, "--ks", "1"])
    from_file = json.loads(capsys.readouterr().out)
    assert from_file.keys() == from_checkpoint.keys()
    for key, value in from_checkpoint.items():
        assert math.isclose(from_file[key], value, rel_tol=1e-5, abs_tol=1e-6), key


def explicit_query_gallery(points, labels, is_query, is_gallery) -> dict[str, float]:
    """Recall@1 and MAP@R by explicit loops: each query ranks the other gallery items."""
    recall, average_precision = [], []
    for query in np.flatnonzero(is_query):
        gallery = [j for j in np.flatnonzero(is_gallery) if j != query]
        ranked = sorted(gallery, key=lambda j: float(np.linalg.norm(points[query] - points[j])))
        relevant = [labels[j] == labels[query] for j in ranked]
        if not any(relevant):
            continue
        r = sum(relevant)
        recall.append(float(relevant[0]))
        hits = [sum(relevant[: i + 1]) / (i + 1) for i in range(r) if relevant[i]]
        average_precision.append(sum(hits) / r)
    return {"recall@1": float(np.mean(recall)), "map@r": float(np.mean(average_precision))}


def test_embedding_csv_honours_is_query_and_is_gallery(tmp_path: Path) -> None:
    points, labels = blobs(num_classes=5, per_class=8, dim=6, seed=3)
    points = points + np.random.default_rng(5).normal(scale=1.5, size=points.shape)
    rows = len(labels)
    is_gallery = np.ones(rows, dtype=bool)
    half = np.ones(rows, dtype=bool)
    half[::2] = False  # half the queries marked false

    def write(name: str, is_query: np.ndarray) -> Path:
        columns = {
            "label": labels.tolist(),
            "is_query": ["True" if q else "False" for q in is_query],
        }
        columns["is_gallery"] = ["1" if g else "0" for g in is_gallery]
        columns.update({f"e{i}": points[:, i].tolist() for i in range(points.shape[1])})
        import pyarrow.csv as pacsv

        pacsv.write_csv(pa.table(columns), tmp_path / name)
        return tmp_path / name

    all_true = evaluate_embeddings(read_embeddings(write("all.csv", np.ones(rows, bool))), (1,))
    halved = evaluate_embeddings(read_embeddings(write("half.csv", half)), (1,))
    assert halved["test/num_queries"] == rows // 2 and "test/num_queries" not in all_true
    assert halved["test/map@r"] != all_true["test/map@r"]
    for metrics, is_query in ((all_true, np.ones(rows, bool)), (halved, half)):
        expected = explicit_query_gallery(points, labels, is_query, is_gallery)
        for key, value in expected.items():
            assert metrics[f"test/{key}"] == pytest.approx(value, abs=1e-6), key
    table = pa.table({"label": labels.tolist(), "is_query": ["maybe"] * rows})
    table = table.append_column("e0", pa.array(points[:, 0].tolist()))
    import pyarrow.csv as pacsv

    pacsv.write_csv(table, tmp_path / "bad.csv")
    with pytest.raises(ValueError, match=r"bad\.csv: row 1: is_query 'maybe' is not a boolean"):
        read_embeddings(tmp_path / "bad.csv")
