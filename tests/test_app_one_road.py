"""Inspect and Compare draw every source from one road (``sources.Opened``): the same checkpoint and
the same embedding file, opened through both real page scripts (``streamlit.testing.v1.AppTest``),
show the same items and the same metrics; a file's query/gallery masks are honoured on both."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dml_core.cli import main
from dml_core.config import TrainConfig
from dml_core.engine.stored_section import read_evaluation
from dml_core.engine.trainer import Trainer
from dml_core.metrics import retrieval_metrics
from dml_core.presets import preset

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
TINY_GLYPHS = {
    **preset("glyphs"),
    "dataset_options": {"num_classes": 6, "samples_per_class": 8, "image_size": 32},
    "batch_size": 12,
    "epochs": 1,
    "eval_batch_size": 64,
}
CHECKPOINT = "runs/tiny/last.safetensors"
EXPORT = "files/export/embeddings.csv"
MASKED = ("files/masked_a.npz", "files/masked_b.npz")
CLASSES, PER_CLASS, DIM = 4, 6, 8


def write_masked(folder: Path) -> dict[str, np.ndarray]:
    """Two models' embeddings of the same 24 items: every other item a query only, the rest
    gallery only (the query/gallery protocol)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(CLASSES), PER_CLASS)
    centres = rng.normal(size=(CLASSES, DIM))
    query = np.arange(len(labels)) % 2 == 0
    for name, spread in zip(MASKED, (0.9, 0.5), strict=True):
        embeddings = centres[labels] + spread * rng.normal(size=(len(labels), DIM))
        np.savez(
            folder.parent / name,
            embeddings=embeddings.astype(np.float32),
            labels=labels,
            class_names=np.array([f"kind{c}" for c in range(CLASSES)]),
            is_query=query,
            is_gallery=~query,
        )
    return {"labels": labels, "is_query": query}


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny glyphs run (its checkpoint stores its evaluation), the checkpoint exported as a CSV
    embedding file, and two masked embedding files."""
    base = tmp_path_factory.mktemp("one-road")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DML_EXPLORER_CACHE", str(base / "glyph-cache"))
        Trainer(TrainConfig.from_dict(TINY_GLYPHS), base / "runs" / "tiny").run()
        out = base / "files" / "export"
        checkpoint = base / CHECKPOINT
        assert main(["export", str(checkpoint), "--format", "csv", "--out", str(out)]) == 0
    write_masked(base / "files")
    return {"base": base}


@pytest.fixture
def env(roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    base = roots["base"]
    monkeypatch.setenv("DML_EXPLORER_CACHE", str(base / "glyph-cache"))
    monkeypatch.setenv("DML_EXPLORER_RUNS_DIR", str(base / "runs"))
    monkeypatch.setenv("DML_EXPLORER_CHECKPOINT_DIRS", str(base / "files"))
    monkeypatch.setenv("DML_EXPLORER_PROJECTION_CACHE", str(base / "projections"))
    monkeypatch.setenv("DML_EXPLORER_UMAP", "off")
    return base


def open_page(page: str) -> AppTest:
    app = AppTest.from_file(MAIN, default_timeout=120)
    app.run()
    app.switch_page(f"views/{page}.py").run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def inspect(label: str) -> AppTest:
    app = open_page("inspect")
    app.selectbox(key="inspect-checkpoint").set_value(label).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def compare(labels: list[str]) -> AppTest:
    app = open_page("compare")
    app.multiselect(key="compare-checkpoints").set_value(labels).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def decoded(encoded: object) -> list:
    """A plotly spec's array: a list, or a typed array ``{"dtype", "bdata"}`` (base64)."""
    if isinstance(encoded, dict):
        return np.frombuffer(base64.b64decode(encoded["bdata"]), dtype=encoded["dtype"]).tolist()
    return list(encoded)


def items(app: AppTest, key_part: str) -> dict[int, str]:
    """``item index → hover text ("#i · class")`` of every point the chart draws."""
    (chart,) = [c for c in app.get("plotly_chart") if key_part in c.proto.id]
    drawn: dict[int, str] = {}
    for trace in json.loads(chart.proto.spec)["data"]:
        if "customdata" in trace and trace.get("hoverinfo") != "skip":
            rows = [int(np.ravel(row)[0]) for row in decoded(trace["customdata"])]
            drawn.update(zip(rows, decoded(trace["text"]), strict=True))
    return drawn


def inspect_metrics(app: AppTest) -> pd.Series:
    table = next(f.value for f in app.dataframe if "recall@1" in f.value.index)
    (column,) = table.columns
    return table[column].rename(lambda name: f"{column}/{name}")


def compare_metrics(app: AppTest) -> pd.DataFrame:
    return next(f.value for f in app.dataframe if "metric" in f.value.columns).set_index("metric")


def assert_same_metrics(shown: pd.Series, table: pd.DataFrame, label: str) -> None:
    common = [key for key in table.index if key in shown.index]
    assert "test/recall@1" in common and "test/map@r" in common, common
    for key in common:
        assert table.loc[key, label] == pytest.approx(shown[key], nan_ok=True), key


def test_a_checkpoint_and_a_file_show_the_same_items_and_metrics_on_both_pages(env: Path) -> None:
    stored = read_evaluation(env / CHECKPOINT)
    compared = compare([CHECKPOINT, EXPORT])
    # A checkpoint and the file exported from it hold the same items: one signature for both
    # kinds, so the per-item views are on.
    assert not [w for w in compared.warning if "Not the same items" in w.value]
    assert any(f for f in compared.dataframe if "Δ (B − A)" in f.value.columns)
    table = compare_metrics(compared)
    for position, label in enumerate((CHECKPOINT, EXPORT)):
        shown = inspect(label)
        assert_same_metrics(inspect_metrics(shown), table, label)
        drawn = items(shown, "inspect-projection")
        assert drawn == items(compared, f"compare-projection-{position}")
        assert sorted(drawn) == list(range(len(stored.labels)))
    # The checkpoint's numbers are the ones it stores, on both pages.
    assert table.loc["test/recall@1", CHECKPOINT] == pytest.approx(stored.metrics["test/recall@1"])


def test_query_gallery_masks_are_honoured_on_both_pages(env: Path) -> None:
    truth = write_masked(env / "files")
    arrays = np.load(env / MASKED[0])
    expected = retrieval_metrics(
        arrays["embeddings"],
        arrays["labels"],
        ks=(1, 2),
        is_query=arrays["is_query"],
        is_gallery=arrays["is_gallery"],
    )
    compared = compare(list(MASKED))
    table = compare_metrics(compared)
    shown = inspect(MASKED[0])
    assert_same_metrics(inspect_metrics(shown), table, MASKED[0])
    for key in ("recall@1", "recall@2", "map@r"):
        assert table.loc[f"test/{key}", MASKED[0]] == pytest.approx(expected[key]), key
    assert any("queries against the gallery" in h.value for h in shown.subheader)
    # Compare's per-class view counts only the queries of each class.
    per_class = next(f.value for f in compared.dataframe if "Δ (B − A)" in f.value.columns)
    assert per_class["queries"].sum() == truth["is_query"].sum() == len(truth["labels"]) // 2
    # The projection explorer's selection: a gallery-only item has no neighbours to show.
    gallery_only = int(np.flatnonzero(~truth["is_query"])[0])
    shown.session_state["inspect-projection-selected"] = [gallery_only]
    shown.run()
    assert any("is not a query (gallery only)" in m.value for m in shown.markdown)
