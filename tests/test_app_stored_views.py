"""Inspect and Compare read a checkpoint's stored evaluation: no dataset needed, a corrupt section is
computed instead, Compare aligns layouts of the same items, Train and Inspect play snapshots."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from streamlit.testing.v1 import AppTest

from dml_core.config import TrainConfig
from dml_core.engine.checkpoint import load_checkpoint, save_checkpoint
from dml_core.engine.projection import procrustes_align
from dml_core.engine.stored_evaluation import write_evaluation
from dml_core.engine.stored_section import SECTION_KEY, read_evaluation
from dml_core.engine.trainer import Trainer
from dml_core.presets import preset

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
TINY_GLYPHS = {
    **preset("glyphs"),
    "dataset_options": {"num_classes": 12, "samples_per_class": 8, "image_size": 32},
    "batch_size": 16,
    "epochs": 2,
    "eval_batch_size": 64,
    "snapshots": "on",
    "eval_every": 1,
}


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny glyphs runs (their checkpoints carry the section, they wrote snapshots), a copy of
    one whose dataset is missing but whose section is there, and a copy with a corrupt section."""
    base = tmp_path_factory.mktemp("stored-views")
    runs = base / "runs"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DML_EXPLORER_CACHE", str(base / "glyph-cache"))
        for name, rho in (("a", 0.0), ("b", 0.3)):
            Trainer(TrainConfig.from_dict({**TINY_GLYPHS, "rho": rho}), runs / name).run()
    extra = base / "extra"
    source = runs / "a" / "last.safetensors"
    model, metadata = load_checkpoint(source)
    metadata["config"].update(dataset="cub200", data_root=str(base / "no-cub"), dataset_options={})
    save_checkpoint(extra / "no-data.safetensors", model, metadata)
    write_evaluation(extra / "no-data.safetensors", read_evaluation(source))
    model, metadata = load_checkpoint(source)
    save_checkpoint(extra / "corrupt.safetensors", model, metadata)
    write_evaluation(extra / "corrupt.safetensors", read_evaluation(source))
    with safe_open(str(extra / "corrupt.safetensors"), framework="pt") as handle:
        header = dict(handle.metadata())
    tensors = load_file(str(extra / "corrupt.safetensors"))
    header[SECTION_KEY] = "{broken"
    save_file(tensors, str(extra / "corrupt.safetensors"), metadata=header)
    return {"runs": runs, "extra": extra, "base": base}


@pytest.fixture
def env(roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setenv("DML_EXPLORER_CACHE", str(roots["base"] / "glyph-cache"))
    monkeypatch.setenv("DML_EXPLORER_RUNS_DIR", str(roots["runs"]))
    monkeypatch.setenv("DML_EXPLORER_CHECKPOINT_DIRS", str(roots["extra"]))
    monkeypatch.setenv("DML_EXPLORER_PROJECTION_CACHE", str(roots["base"] / "projections"))
    monkeypatch.setenv("DML_EXPLORER_UMAP", "off")
    return roots


def open_page(page: str) -> AppTest:
    app = AppTest.from_file(MAIN, default_timeout=120)
    app.run()
    app.switch_page(f"views/{page}.py").run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def charts(app: AppTest, key_part: str) -> list[dict]:
    return [
        json.loads(chart.proto.spec)
        for chart in app.get("plotly_chart")
        if key_part in chart.proto.id
    ]


def values(encoded: object) -> np.ndarray:
    """A plotly spec's array: a list, or a typed array ``{"dtype", "bdata"}`` (base64)."""
    if isinstance(encoded, dict):
        return np.frombuffer(base64.b64decode(encoded["bdata"]), dtype=encoded["dtype"])
    return np.asarray(encoded, dtype=np.float64)


def xs(figure: dict) -> np.ndarray:
    """Every point's x over the figure's traces, sorted (legend lines have no points)."""
    found = np.concatenate([values(trace["x"]) for trace in figure["data"] if "x" in trace])
    return np.sort(found[np.isfinite(found)])


def test_inspect_shows_a_stored_checkpoint_without_its_dataset(env: dict[str, Path]) -> None:
    app = open_page("inspect")
    app.selectbox(key="inspect-checkpoint").set_value("extra/no-data.safetensors").run()
    assert not app.exception, [e.value for e in app.exception]
    assert not app.warning  # no "only metadata" notice: the section is enough
    stored = read_evaluation(env["extra"] / "no-data.safetensors")
    (projection,) = charts(app, "inspect-projection")
    # The stored UMAP is drawn as it is (UMAP is off in this process: nothing was computed).
    assert projection["layout"]["title"]["text"].startswith("UMAP")
    np.testing.assert_allclose(xs(projection), np.sort(stored.umap[:, 0]), rtol=1e-5)
    table = next(f.value for f in app.dataframe if "recall@1" in f.value.index)
    assert table.loc["recall@1", "test"] == pytest.approx(stored.metrics["test/recall@1"])
    assert any("no thumbnails" in caption.value for caption in app.caption)


def test_inspect_computes_a_corrupt_section_instead(env: dict[str, Path]) -> None:
    app = open_page("inspect")
    app.selectbox(key="inspect-checkpoint").set_value("extra/corrupt.safetensors").run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("stored evaluation section" in info.value for info in app.info)
    good = read_evaluation(env["runs"] / "a" / "last.safetensors")
    table = next(f.value for f in app.dataframe if "recall@1" in f.value.index)
    assert table.loc["recall@1", "test"] == pytest.approx(good.metrics["test/recall@1"])
    (projection,) = charts(app, "inspect-projection")
    assert projection["layout"]["title"]["text"].startswith("PCA")  # UMAP off, none stored


def test_compare_rotates_layouts_of_the_same_items_onto_the_first(env: dict[str, Path]) -> None:
    app = open_page("compare")
    chosen = ["runs/a/last.safetensors", "runs/b/last.safetensors"]
    app.multiselect(key="compare-checkpoints").set_value(chosen).run()
    assert not app.exception, [e.value for e in app.exception]
    first, second = (charts(app, f"compare-projection-{i}")[0] for i in (0, 1))
    assert "rotated onto #1" in second["layout"]["title"]["text"]
    a, b = (read_evaluation(env["runs"] / n / "last.safetensors") for n in ("a", "b"))
    np.testing.assert_allclose(xs(first), np.sort(a.pca[:, 0]), rtol=1e-4, atol=1e-5)
    expected = procrustes_align(b.pca, a.pca)
    np.testing.assert_allclose(xs(second), np.sort(expected[:, 0]), rtol=1e-4, atol=1e-5)


def test_inspect_and_train_play_the_runs_snapshots(env: dict[str, Path]) -> None:
    app = open_page("inspect")
    app.selectbox(key="inspect-checkpoint").set_value("runs/a/last.safetensors").run()
    assert not app.exception, [e.value for e in app.exception]
    (player,) = charts(app, "inspect-player")
    assert [step["label"] for step in player["layout"]["sliders"][0]["steps"]] == ["1", "2"]
    assert len(player["frames"]) == 2
    assert player["layout"]["updatemenus"][0]["buttons"][0]["method"] == "animate"
    train = open_page("train")
    assert not train.exception, [e.value for e in train.exception]
    players = charts(train, "train-snapshot-player")
    assert players and len(players[0]["frames"]) == 2
