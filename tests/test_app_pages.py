"""Every app page through ``streamlit.testing.v1.AppTest`` on tiny checkpoints trained here."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dml_core.config import TrainConfig
from dml_core.engine.checkpoint import load_checkpoint, save_checkpoint
from dml_core.engine.trainer import Trainer
from dml_core.metrics import retrieval_metrics
from dml_core.presets import preset

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
TINY_GLYPHS = {
    **preset("glyphs"),
    "dataset_options": {"num_classes": 12, "samples_per_class": 8, "image_size": 32},
    "batch_size": 16,
    "epochs": 1,
    "eval_batch_size": 64,
}
PAGE_TIMEOUT = 60


@pytest.fixture(scope="session")
def app_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny glyphs runs (with and without ρ) in a runs folder, and a checkpoint whose
    dataset (CUB200 at a missing root) is not available, in an extra checkpoint folder."""
    base = tmp_path_factory.mktemp("app")
    cache = base / "glyph-cache"
    runs = base / "runs"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DML_EXPLORER_CACHE", str(cache))
        for name, rho in (("norho", 0.0), ("rho", 0.3)):
            Trainer(TrainConfig.from_dict({**TINY_GLYPHS, "rho": rho}), runs / name).run()
    extra = base / "extra"
    model, metadata = load_checkpoint(runs / "norho" / "last.safetensors")
    metadata["config"].update(
        dataset="cub200", data_root=str(base / "no-cub"), dataset_options={}, image_size=224
    )
    save_checkpoint(extra / "cub.safetensors", model, metadata)
    return {"runs": runs, "extra": extra, "cache": cache, "base": base}


@pytest.fixture
def app_env(app_roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setenv("DML_EXPLORER_CACHE", str(app_roots["cache"]))
    monkeypatch.setenv("DML_EXPLORER_RUNS_DIR", str(app_roots["runs"]))
    monkeypatch.setenv("DML_EXPLORER_CHECKPOINT_DIRS", str(app_roots["extra"]))
    monkeypatch.setenv("DML_EXPLORER_PROJECTION_CACHE", str(app_roots["base"] / "projections"))
    monkeypatch.setenv("DML_EXPLORER_UMAP", "off")
    return app_roots


def open_page(page: str) -> AppTest:
    app = AppTest.from_file(MAIN, default_timeout=PAGE_TIMEOUT)
    app.run()
    app.switch_page(f"views/{page}.py").run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def metric_table(app: AppTest, has: Callable[[pd.DataFrame], bool]) -> pd.DataFrame:
    """The first dataframe on the page for which ``has`` holds."""
    frames = [frame.value for frame in app.dataframe if has(frame.value)]
    assert frames, "metric table missing"
    return frames[0]


@pytest.mark.parametrize("page", ["toy_lab", "train", "inspect", "compare"])
def test_page_loads_without_exception(app_env: dict[str, Path], page: str) -> None:
    app = open_page(page)
    assert app.title and app.title[0].value


def test_inspect_shows_the_metric_table(app_env: dict[str, Path]) -> None:
    app = open_page("inspect")
    app.selectbox(key="inspect-checkpoint").set_value("runs/norho/last.safetensors").run()
    assert not app.exception, [e.value for e in app.exception]
    table = metric_table(app, lambda frame: "recall@1" in frame.index)
    for key in ("recall@1", "map@r", "rho@2", "pi_ratio"):
        assert key in table.index
    from dml_core.engine.evaluation import embed_checkpoint

    path = app_env["runs"] / "norho" / "last.safetensors"
    embedded = embed_checkpoint(path, "test", device="cpu", amp="off")
    expected = retrieval_metrics(embedded.embeddings, embedded.labels, ks=(1,))["recall@1"]
    assert table.loc["recall@1", "test"] == pytest.approx(expected)
    assert not app.warning


def test_missing_dataset_shows_the_notice_and_stored_metrics(app_env: dict[str, Path]) -> None:
    app = open_page("inspect")
    app.selectbox(key="inspect-checkpoint").set_value("extra/cub.safetensors").run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("not available" in warning.value for warning in app.warning)
    assert "cub200" in app.caption[0].value
    assert app.title[0].value == "Inspect cub.safetensors"
    history = metric_table(app, lambda frame: "metric" in frame.columns)  # one row per metric
    assert "test/recall@1" in history["metric"].tolist()


def test_inspect_refuses_a_path_outside_the_roots_and_the_list_yields_to_a_path(
    app_env: dict[str, Path], tmp_path: Path
) -> None:
    outside = tmp_path / "x.safetensors"
    outside.write_bytes(b"\x00" * 16)
    app = open_page("inspect")
    assert not app.selectbox(key="inspect-checkpoint").disabled
    app.text_input(key="inspect-path").input(str(outside)).run()
    assert any("outside the checkpoint folders" in error.value for error in app.error)
    assert app.selectbox(key="inspect-checkpoint").disabled  # the typed path is what is open
    app.text_input(key="inspect-path").input(str(app_env["runs"] / "norho" / "config.json")).run()
    assert any("not a .safetensors file" in error.value for error in app.error)


def test_compare_shows_deltas_against_the_first(app_env: dict[str, Path]) -> None:
    app = open_page("compare")
    chosen = ["runs/norho/last.safetensors", "runs/rho/last.safetensors"]
    app.multiselect(key="compare-checkpoints").set_value(chosen).run()
    assert not app.exception, [e.value for e in app.exception]
    table = metric_table(app, lambda frame: "metric" in frame.columns).set_index("metric")
    row = table.loc["test/recall@1"]
    assert row[f"Δ {chosen[1]}"] == pytest.approx(row[chosen[1]] - row[chosen[0]])
    spectra = [chart for chart in app.get("plotly_chart") if "compare-spectrum" in chart.proto.id]
    names = [trace["name"] for trace in json.loads(spectra[0].proto.spec)["data"]]
    assert names == chosen
    headings = [heading.value for heading in app.subheader]
    assert headings.index("Metrics (Δ against the first)") < headings.index("Projections")
    projections = [c for c in app.get("plotly_chart") if "compare-projection" in c.proto.id]
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in projections]
    assert titles == [f"{label}<br><sub>PCA, rotated onto #1</sub>" for label in chosen]


def test_train_page_overlays_finished_runs(app_env: dict[str, Path]) -> None:
    app = open_page("train")
    app.multiselect(key="train-overlay").set_value(["norho", "rho"]).run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("finished" in markdown.value for markdown in app.markdown)
    curves = [chart for chart in app.get("plotly_chart") if "train-curves" in chart.proto.id]
    traces = json.loads(curves[0].proto.spec)["data"]
    assert {trace["name"] for trace in traces} == {"norho", "rho"}
    recall = next(t for t in traces if t["name"] == "rho" and t["xaxis"] == "x2")
    assert list(plotly_array(recall["x"])) == [1]
    assert 0.0 <= plotly_array(recall["y"])[0] <= 1.0


def plotly_array(value: list | dict) -> np.ndarray:
    """A trace array from plotly JSON: a list, or ``{"dtype", "bdata"}`` (base64) for numpy data."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return np.asarray(value)


def _toy_spectrum(app: AppTest) -> np.ndarray:
    charts = [chart for chart in app.get("plotly_chart") if "toy-spectrum" in chart.proto.id]
    assert charts, "no spectrum drawn"
    return plotly_array(json.loads(charts[-1].proto.spec)["data"][0]["y"])


def test_toggling_the_toy_mode_changes_the_spectrum(app_env: dict[str, Path]) -> None:
    app = open_page("toy_lab")
    app.selectbox(key="toy-mode").set_value("base").run()
    app.button(key="toy-train").click().run()
    base = _toy_spectrum(app)
    app.selectbox(key="toy-mode").set_value("rho").run()
    assert any("Settings changed" in info.value for info in app.info)
    app.button(key="toy-train").click().run()
    assert not app.exception, [e.value for e in app.exception]
    rho = _toy_spectrum(app)
    assert base.shape == rho.shape and not np.allclose(base, rho)
    assert rho.sum() == pytest.approx(1.0, abs=1e-6)


def test_train_page_lists_new_failed_and_snapshotless_runs(
    app_env: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that appears while the page is open joins the overlay; a run that died before its
    first event is shown red with its error; a toy run (snapshots off, 2-D) says so and writes
    ρ@2 as n/a."""
    import shutil

    root = tmp_path / "runs"
    monkeypatch.setenv("DML_EXPLORER_RUNS_DIR", str(root))
    shutil.copytree(app_env["runs"] / "norho", root / "norho")
    with open(root / "norho" / "events.jsonl", "a") as events:
        events.write("42\n")  # a line that is not an event
    app = open_page("train")
    assert app.multiselect(key="train-overlay").value == ["norho"]
    skipped = [w.value for w in app.warning if "skipped" in w.value]
    assert skipped and skipped[0].startswith("1 line skipped (first: ") and ".jsonl:" in skipped[0]

    Trainer(TrainConfig.from_dict({**preset("toy"), "epochs": 50}), root / "toy").run()
    broken = root / "broken"
    broken.mkdir()
    (broken / "app.pid").write_text('{"pid": 999999999, "command": []}')
    (broken / "output.log").write_text("error: dataset 'cub200' needs root=<folder>\n")
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert set(app.multiselect(key="train-overlay").value) == {"norho", "toy", "broken"}
    errors = [error.value for error in app.error]
    assert any("failed at launch" in e and "needs root=<folder>" in e for e in errors), errors

    app.selectbox(key="train-focus").set_value("toy").run()
    assert any("Snapshots are off" in caption.value for caption in app.caption)
    curves = [chart for chart in app.get("plotly_chart") if "train-curves" in chart.proto.id]
    spec = json.loads(curves[0].proto.spec)
    rho = [t["name"] for t in spec["data"] if t["xaxis"] == "x4"]
    assert rho == ["norho"]
    assert any(
        "n/a" in note["text"] and "toy" in note["text"] for note in spec["layout"]["annotations"]
    )
