"""``python -m dml_core project FILE`` on embedding files (issue 28 item 2, issue 30 item 1): the
PCA and UMAP stored in ``<file>.projection.npz``, matched by the file's content, read by the app's
one road (``app.panels.common.open_source``) so Inspect and Compare draw them without fitting."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dml_core.cli import main
from dml_core.engine.projection import pca_2d
from dml_core.interop.projection_file import read_file_projection, sidecar_path


def _write(path: Path, seed: int = 0, items: int = 60) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(items // 6), 6)
    embeddings = rng.normal(size=(items // 6, 8))[labels] + 0.3 * rng.normal(size=(items, 8))
    embeddings = embeddings.astype(np.float32)
    if path.suffix == ".npz":
        np.savez(path, embeddings=embeddings, labels=labels)
    else:
        frame = pd.DataFrame(
            {"label": labels, "split": np.where(np.arange(items) % 3, "test", "val")}
        )
        for column in range(embeddings.shape[1]):
            frame[f"e{column}"] = embeddings[:, column]
        frame.to_csv(path, index=False)
    return embeddings


def test_project_stores_pca_and_umap_beside_an_npz_matched_by_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "model.npz"
    embeddings = _write(path)
    assert main(["project", str(path)]) == 0
    assert '"umap": true' in capsys.readouterr().out
    sidecar = sidecar_path(path)
    assert sidecar.name == "model.npz.projection.npz"
    stored = read_file_projection(path, "test", len(embeddings))
    np.testing.assert_allclose(stored.pca, pca_2d(embeddings))
    assert stored.umap.shape == (60, 2) and np.isfinite(stored.umap).all()
    assert read_file_projection(path, "test", 59) is None  # other row counts: not this split
    # A copied file keeps its projection (same content); a changed one of the same size does not.
    copy = tmp_path / "copy.npz"
    shutil.copy(path, copy)
    shutil.copy(sidecar, sidecar_path(copy))
    assert read_file_projection(copy, "test", 60) is not None
    _write(path, seed=1)
    assert path.stat().st_size == copy.stat().st_size
    assert read_file_projection(path, "test", 60) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "copy.npz", "copy.npz.projection.npz", "model.npz", "model.npz.projection.npz"
    ]  # fmt: skip


def test_project_stores_each_split_of_a_csv_pca_only_with_no_umap(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    embeddings = _write(path)
    assert main(["project", str(path), "--no-umap"]) == 0
    test_rows = embeddings[np.arange(60) % 3 != 0]
    stored = read_file_projection(path, "test", len(test_rows))
    np.testing.assert_allclose(stored.pca, pca_2d(test_rows), rtol=1e-5, atol=1e-5)
    assert stored.umap is None
    assert read_file_projection(path, "val", 20) is not None


def test_the_app_opens_a_file_with_its_stored_projection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DML_EXPLORER_CHECKPOINT_DIRS", str(tmp_path))
    path = tmp_path / "model.npz"
    _write(path)
    from app import sources
    from app.panels import common

    source = sources.resolve_source(path)
    assert common.open_source(source).umap is None  # nothing stored: the app fits it
    main(["project", str(path)])
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))  # a new version
    opened = common.open_source(source)
    stored = np.load(sidecar_path(path))
    np.testing.assert_array_equal(opened.umap, stored["test.umap"])
    np.testing.assert_array_equal(opened.pca, stored["test.pca"])


def test_project_stores_the_evaluation_the_app_would_compute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leave-one-out split's metrics, AP@R and neighbours are stored, and the app uses them:
    equal to what it computes without the sidecar."""
    monkeypatch.setenv("DML_EXPLORER_CHECKPOINT_DIRS", str(tmp_path))
    path = tmp_path / "model.npz"
    _write(path, items=120)
    from app import sources
    from app.panels import common

    source = sources.resolve_source(path)
    computed_metrics, computed = common.analysed(common.open_source(source))
    main(["project", str(path), "--no-umap"])
    stored = read_file_projection(path, "test", 120)
    assert stored.report is not None and stored.ks == (1, 2, 4, 8)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))
    metrics, report = common.analysed(common.open_source(source))
    assert report is not computed
    np.testing.assert_array_equal(report.neighbor_indices, computed.neighbor_indices)
    np.testing.assert_allclose(report.average_precision_at_r, computed.average_precision_at_r)
    assert metrics == pytest.approx(computed_metrics, nan_ok=True)
