"""The Toy lab page through ``streamlit.testing.v1.AppTest`` (real toy runs, 40 iterations) and
its figure builders (app/figures/toy.py, app/figures/replay.py) on real recordings."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app import toy_text
from app.figures import replay
from app.figures import toy as toy_plots
from app.figures.labels import NUMBER_FORMAT
from toy import ToySettings, record_toy, run_study, toy_data
from toy.api import RESULT_METRICS
from toy.palette import TEST_COLOURS, TRAIN_COLOURS

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
SHORT_ITERATIONS = 40
NBSP = "\u00a0"


@pytest.fixture
def toy_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("DML_EXPLORER_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("DML_EXPLORER_PROJECTION_CACHE", str(tmp_path / "projections"))
    monkeypatch.setenv("DML_EXPLORER_UMAP", "off")
    app = AppTest.from_file(MAIN, default_timeout=120)
    app.run()
    app.switch_page("views/toy_lab.py").run()
    app.slider(key="toy-iterations").set_value(SHORT_ITERATIONS).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def chart_spec(app: AppTest, key: str) -> dict:
    charts = [chart for chart in app.get("plotly_chart") if chart.proto.id.endswith(key)]
    assert charts, f"no chart {key}"
    return json.loads(charts[-1].proto.spec)


def decoded(values: object) -> np.ndarray:
    """A plotly JSON array (a list, or a base64 typed array ``{"dtype", "bdata"}``) as numbers."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
    return np.asarray(values, dtype=np.float64)


def test_side_by_side_run_gives_one_panel_per_mode_with_numbers(toy_page: AppTest) -> None:
    app = toy_page
    app.multiselect(key="toy-compare-modes").set_value(["base", "paper", "no_pull"]).run()
    app.button(key="toy-compare").click().run()
    assert not app.exception, [e.value for e in app.exception]

    values: dict[str, dict[str, float]] = {}
    for mode in ("base", "paper", "no_pull"):
        metrics = app.container(f"toy-panel-{mode}").metric
        assert [m.label for m in metrics] == ["test Recall@1", "ρ@1 (lower = flatter)", "π_ratio"]
        values[mode] = {m.label: float(m.value) for m in metrics}
        deltas = [m.delta for m in metrics]
        if mode == "base":
            assert deltas == ["", "", ""]
        else:
            assert all(delta.endswith("vs base") for delta in deltas)
            rho_delta = float(deltas[1].split()[0])
            expected = (
                values[mode]["ρ@1 (lower = flatter)"] - values["base"]["ρ@1 (lower = flatter)"]
            )
            assert rho_delta == pytest.approx(expected, abs=2e-3)
    # the paper's claim on this seed: the regularized spectrum is flatter than base's
    assert values["paper"]["ρ@1 (lower = flatter)"] < values["base"]["ρ@1 (lower = flatter)"]
    assert any("Versus base, same seed 0" in md.value for md in app.markdown)
    table = app.dataframe[0].value
    assert list(table["mode"]) == ["base", "paper", "no_pull"]
    assert list(table.columns) == [
        "mode", "test R@1", "Δ test R@1", "train R@1", "ρ@1", "Δ ρ@1", "π_ratio", "Δ π_ratio",
        "s̃ (train)",
    ]  # fmt: skip
    paper = table.iloc[1]
    assert paper["Δ ρ@1"] == pytest.approx(paper["ρ@1"] - table.iloc[0]["ρ@1"], abs=2e-4)
    assert paper["ρ@1"] == pytest.approx(values["paper"]["ρ@1 (lower = flatter)"], abs=5e-4)

    spec = chart_spec(app, "toy-spectrum-and-embeddings")
    captions = [note["text"] for note in spec["layout"]["annotations"]]
    assert [c.split("</b>")[0] for c in captions[:3]] == ["<b>base", "<b>paper", "<b>no_pull"]
    steps = [frame["name"] for frame in spec["frames"]]
    assert steps[0] == "0" and steps[-1] == str(SHORT_ITERATIONS) and len(steps) > 20
    assert spec["layout"]["sliders"][0]["active"] == len(steps) - 1
    labels = [button["label"] for button in spec["layout"]["updatemenus"][0]["buttons"]]
    assert labels == ["▶ ¼×", "▶ ½×", "▶ 1×", "▶ 2×", "❚❚"]
    assert any("Trained base, paper, no_pull" in caption.value for caption in app.caption)

    # each number and mode explained in a help icon; the side by side said in words
    panel = app.container("toy-panel-paper")
    assert [m.help for m in panel.metric] == [
        toy_text.TERMS[t] for t in ("test Recall@1", "ρ@1", "π_ratio")
    ]
    assert panel.markdown[0].proto.help == toy_text.MODES["paper"]
    words = [md.value.replace(NBSP, " ") for md in app.container("toy-in-words").markdown]
    assert len(words) == 2 and words[0].startswith("The spectrum of *paper* is flatter than")
    bars = {bar["name"]: decoded(bar["y"]) for bar in spec["data"][:3]}
    for line, mode in zip(words, ("paper", "no_pull"), strict=True):
        shares = [round(100 * bars[m][1]) for m in (mode, "base")]
        assert f"carries {shares[0]} % of the spread instead of {shares[1]} %" in line, line
        recall = round(100 * values[mode]["test Recall@1"])
        assert f"*{mode}* puts a classmate nearest to {recall} % of the points" in line


def test_push_slider_only_counts_in_mode_rho(toy_page: AppTest) -> None:
    app = toy_page
    app.multiselect(key="toy-compare-modes").set_value(["base", "paper"]).run()
    assert app.slider(key="toy-push").disabled
    app.button(key="toy-train").click().run()
    assert any("Trained base for 40 iterations" in c.value for c in app.caption)

    app.selectbox(key="toy-mode").set_value("rho").run()
    assert not app.slider(key="toy-push").disabled
    assert any("press Train to retrain" in info.value for info in app.info)
    app.slider(key="toy-push").set_value(0.6).run()
    app.selectbox(key="toy-mode").set_value("base").run()
    assert app.slider(key="toy-push").disabled
    assert not any("Settings changed" in info.value for info in app.info), "base ignores p_ρ"
    assert any("Trained base for 40 iterations" in c.value for c in app.caption)

    app.selectbox(key="toy-mode").set_value("rho").run()
    app.button(key="toy-train").click().run()
    assert not any("Settings changed" in info.value for info in app.info)
    app.slider(key="toy-push").set_value(0.3).run()  # used by rho: the run is out of date
    assert any("press Train to retrain" in info.value for info in app.info)

    app.selectbox(key="toy-mode").set_value("base").run()
    app.multiselect(key="toy-compare-modes").set_value(["paper", "rho"]).run()
    assert not app.slider(key="toy-push").disabled, "rho is among the side-by-side modes"


def test_presentation_mode_hides_controls_and_enlarges_plots(toy_page: AppTest) -> None:
    app = toy_page
    app.slider(key="toy-margin").set_value(0.2).run()
    app.button(key="toy-compare").click().run()
    normal = chart_spec(app, "toy-spectrum-and-embeddings")["layout"]
    assert {"toy-margin", "toy-lr", "toy-sampler"} <= {w.key for w in app.sidebar}

    app.toggle(key="toy-presentation").set_value(True).run()
    assert not app.exception, [e.value for e in app.exception]
    assert len(app.sidebar) == 0, "presentation mode puts its few controls on the page"
    keys = {widget.key for widget in app.main if widget.key}
    assert "toy-margin" not in keys and "toy-train" not in keys and "toy-compare" in keys
    large = chart_spec(app, "toy-spectrum-and-embeddings")["layout"]
    assert large["font"]["size"] > normal["font"]["size"]
    assert large["height"] > normal["height"]
    assert not app.dataframe, "no tables in presentation mode"
    (glossary,) = [md.value for md in app.container("toy-glossary").markdown]
    lines = glossary.split("\n")
    assert (
        lines[0] == "- **base**: the plain loss (pull + push, no swaps); it tends to squeeze "
        "everything onto the one direction the training classes need."
    )
    named = ["base", "paper", "test Recall@1", "ρ@1", "π_ratio", "pull + push", "swaps", "p_ρ"]
    assert [line.split("**")[1] for line in lines] == named
    for line, name in zip(lines[1:], named[1:], strict=True):
        whole = toy_text.MODES.get(name) or toy_text.TERMS[name]
        assert line.replace("**", "") == f"- {whole}"

    app.toggle(key="toy-presentation").set_value(False).run()
    assert app.slider(key="toy-margin").value == pytest.approx(0.2), "hidden value kept"
    assert not any("Settings changed" in info.value for info in app.info)


# ---------------------------------------------------------------- figures


@pytest.fixture(scope="module")
def recordings() -> dict[str, object]:
    return {
        dim: {
            mode: record_toy(ToySettings(mode=mode, iterations=20, embed_dim=dim))
            for mode in ("base", "paper")
        }
        for dim in (2, 3)
    }


def test_replay_holds_every_frame_and_the_last_one_is_shown(recordings: dict) -> None:
    runs = recordings[2]
    labels = runs["base"].result
    figure = replay.replay_figure(
        {m: r.frames for m, r in runs.items()}, labels.train_labels, labels.test_labels
    )
    assert [frame.name for frame in figure.frames] == [str(s) for s in runs["base"].steps]
    np.testing.assert_allclose(figure.data[0].y, runs["base"].result.spectrum)
    np.testing.assert_allclose(figure.data[1].y, runs["paper"].result.spectrum)
    first = figure.frames[0]
    np.testing.assert_allclose(first.data[0].y, runs["base"].frames[0].spectrum)
    train_zero = runs["base"].frames[0].train_embeddings[labels.train_labels == 0]
    np.testing.assert_allclose(first.data[2].x, train_zero[:, 0])
    assert "step 0" in first.layout.annotations[0].text
    assert figure.layout.title.text == "embedding at step 20 of 20"
    with pytest.raises(ValueError, match="same steps"):
        short = record_toy(ToySettings(iterations=10))
        replay.replay_figure(
            {"base": runs["base"].frames, "rho": short.frames},
            labels.train_labels,
            labels.test_labels,
        )


def test_train_and_test_classes_use_distinct_colour_families(recordings: dict) -> None:
    assert not set(TRAIN_COLOURS) & set(TEST_COLOURS)
    figure = toy_plots.data_figure(toy_data(0))
    colours = {trace.name: trace.marker.color for trace in figure.data}
    assert {colours[f"train {c}"] for c in range(4)} == set(TRAIN_COLOURS)
    assert {colours[f"test {c}"] for c in range(4)} == set(TEST_COLOURS)
    assert all(trace.showlegend for trace in figure.data)


def test_three_d_replay_draws_the_sphere_in_a_fixed_cube(recordings: dict) -> None:
    runs = recordings[3]
    result = runs["base"].result
    figure = replay.replay_figure(
        {m: r.frames for m, r in runs.items()}, result.train_labels, result.test_labels
    )
    spheres = [trace for trace in figure.data if trace.type == "surface"]
    assert len(spheres) == 2 and all(0 < sphere.opacity < 0.5 for sphere in spheres)
    radius = np.sqrt(spheres[0].x ** 2 + spheres[0].y ** 2 + spheres[0].z ** 2)
    np.testing.assert_allclose(radius, 1.0, atol=1e-9)
    for scene in (figure.layout.scene, figure.layout.scene2):
        assert scene.aspectmode == "cube" and scene.camera.eye.x is not None
        for axis in (scene.xaxis, scene.yaxis, scene.zaxis):
            assert axis.range[0] <= -1.1 and axis.range[1] >= 1.1
            assert axis.showticklabels is False  # two axes' labels would overlap at corners


def test_loss_and_study_axes_use_plain_decimals() -> None:
    figure = toy_plots.loss_figure({"paper": np.array([2e-6, 1e-6, 0.0])})
    assert figure.layout.yaxis.tickformat == NUMBER_FORMAT
    assert "s" not in NUMBER_FORMAT, "no SI prefixes (µ, m)"
    study = json.loads(
        (Path(__file__).resolve().parents[1] / "docs/toy/toy_study.json").read_text()
    )
    strip = toy_plots.study_figure(study, "test_recall@1")
    seeds = [trace for trace in strip.data if trace.name.endswith(": seeds")]
    assert [len(trace.y) for trace in seeds] == [len(study["seeds"])] * len(study["modes"])
    means = [trace for trace in strip.data if trace.name.endswith(": mean")]
    for trace, mode in zip(means, study["modes"], strict=True):
        summary = study["modes"][mode]["summary"]["test_recall@1"]
        assert trace.y[0] == pytest.approx(summary["mean"])
        assert trace.error_y.arrayminus[0] == pytest.approx(summary["mean"] - summary["ci95"][0])


def near_ceiling_study() -> dict:
    """A two-mode study whose Recall@1 t-interval reaches past 1 and ρ@1's below 0."""
    study = run_study(["base", "paper"], 3, ToySettings(iterations=10))
    summary = study["modes"]["paper"]["summary"]
    summary["test_recall@1"].update(mean=0.98, ci95=[0.92, 1.04])
    summary["rho@1"].update(mean=0.01, ci95=[-0.02, 0.04])
    return study


def test_seed_study_intervals_stay_in_the_metric_range_and_the_table_reads() -> None:
    study = near_ceiling_study()
    rows = toy_text.study_rows(study, RESULT_METRICS)
    assert list(rows[0]) == ["mode", "test Recall@1", "train Recall@1", "ρ@1", "π_ratio"]
    paper = rows[1]
    assert paper["test Recall@1"] == "0.980 [0.920, 1.000]"
    assert paper["ρ@1"] == "0.010 [0.000, 0.040]"
    strip = toy_plots.study_figure(study, "test_recall@1")
    mean = next(trace for trace in strip.data if trace.name == "paper: mean")
    assert mean.y[0] + mean.error_y.array[0] == pytest.approx(1.0)
    assert toy_text.clipped_interval("pi_ratio", -0.5, 3.0) == (0.0, 3.0)


def test_seed_study_caption_names_its_settings() -> None:
    study = near_ceiling_study()
    caption = toy_text.study_caption(study, stored=False)
    assert caption.startswith("This study: 3 seeds (0–2), 10 iterations, margin 0.1,")
    assert "learning rate 0.03" in caption and "p_ρ 0.2 (mode rho), 2-D" in caption
    assert "clipped to the metric's range" in caption
    stored = json.loads(
        (Path(__file__).resolve().parents[1] / "docs/toy/toy_study.json").read_text()
    )
    assert "20 seeds (0–19), 200 iterations" in toy_text.study_caption(stored, stored=True)


def test_spectrum_sentence_says_flatter_steeper_or_as_flat() -> None:
    spectra = {"base": np.array([0.86, 0.14]), "paper": np.array([0.65, 0.35])}
    assert toy_text.spectrum_sentence("paper", "base", spectra).replace(NBSP, " ") == (
        "The spectrum of *paper* is flatter than *base*'s: its second singular value carries "
        "35 % of the spread instead of 14 %."
    )
    assert "steeper" in toy_text.spectrum_sentence("base", "paper", spectra)
    spectra["rho"] = np.array([0.861, 0.139])
    assert "is as flat as *base*'s" in toy_text.spectrum_sentence("rho", "base", spectra)
    three = {"a": np.array([0.5, 0.3, 0.2]), "b": np.array([0.9, 0.05, 0.05])}
    assert "its singular values after the first carry 50\u00a0%" in toy_text.spectrum_sentence(
        "a", "b", three
    ), "a no-break space before %: never '50' at a line's end and '%' on the next"
