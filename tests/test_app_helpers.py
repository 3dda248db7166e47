"""The app's pure helpers: projections and their cache, checkpoint safety, retrieval rows, figures."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from app import analysis, projection
from app.checkpoints import (
    CHECKPOINT_DIRS_VARIABLE,
    UnsafeCheckpointError,
    allowed_roots,
    discover_checkpoints,
    resolve_checkpoint,
)
from app.figures.curves import CURVE_PANELS, curves_figure
from app.figures.images import retrieval_grid_html
from app.figures.labels import integer_ticks, wrap_title
from app.figures.palette import HIT_BORDER, MISS_BORDER, QUERY_BORDER
from app.figures.projection import common_extent, projection_figure
from app.figures.spectrum import spectrum_figure
from dml_core.config import TrainConfig
from dml_core.engine.checkpoint import save_checkpoint
from dml_core.metrics import retrieval_report
from dml_core.presets import preset


@pytest.fixture
def checkpoint_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "allowed"
    root.mkdir()
    monkeypatch.setenv(CHECKPOINT_DIRS_VARIABLE, str(root))
    monkeypatch.setenv("DML_EXPLORER_RUNS_DIR", str(tmp_path / "runs"))
    return root


def write_checkpoint(path: Path) -> Path:
    """A real (untrained) DML Explorer checkpoint: the toy's MLP with full metadata."""
    from dml_core.models import build_model

    config = TrainConfig.from_dict(preset("toy"))
    model = build_model("mlp", 2, pretrained=None, frozen_bn=False, normalize=True, in_channels=3)
    metadata = {"kind": "last", "config": config.to_dict(), "model": model.config(), "history": []}
    return save_checkpoint(path, model, metadata)


# --- projection -----------------------------------------------------------------------------------


def test_pca_matches_sklearn_up_to_sign() -> None:
    points = np.random.default_rng(0).normal(size=(300, 16)) * np.linspace(3, 0.1, 16)
    ours = projection.pca_2d(points)
    reference = PCA(n_components=2).fit_transform(points)
    for axis in range(2):
        correlation = np.corrcoef(ours[:, axis], reference[:, axis])[0, 1]
        assert abs(correlation) == pytest.approx(1.0, abs=1e-6)
    # Deterministic signs: the largest loading of each axis is positive.
    centred = points - points.mean(axis=0)
    loadings = np.linalg.lstsq(centred, ours.astype(np.float64), rcond=None)[0]
    assert (loadings[np.abs(loadings).argmax(axis=0), [0, 1]] > 0).all()


def test_pca_of_one_dimensional_embeddings_pads_a_zero_axis() -> None:
    coordinates = projection.pca_2d(np.arange(10.0).reshape(10, 1))
    assert coordinates.shape == (10, 2) and np.allclose(coordinates[:, 1], 0)


def test_projection_key_changes_with_mtime_split_and_method(tmp_path: Path) -> None:
    source = tmp_path / "a.safetensors"
    source.write_bytes(b"x")
    first = projection.projection_key(source, "test", "umap")
    assert first == projection.projection_key(source, "test", "umap")
    assert first != projection.projection_key(source, "eval_train", "umap")
    assert first != projection.projection_key(source, "test", "pca")
    os.utime(source, ns=(1, source.stat().st_mtime_ns + 10**9))
    assert first != projection.projection_key(source, "test", "umap")


def test_projection_cache_round_trip_and_unreadable_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DML_EXPLORER_PROJECTION_CACHE", str(tmp_path / "cache"))
    coordinates = np.random.default_rng(1).normal(size=(5, 2)).astype(np.float32)
    assert projection.read_cached("k") is None
    projection.write_cached("k", coordinates)
    assert np.array_equal(projection.read_cached("k"), coordinates)
    (tmp_path / "cache" / "broken.npz").write_bytes(b"not an npz")
    assert projection.read_cached("broken") is None


def test_umap_off_returns_only_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DML_EXPLORER_PROJECTION_CACHE", str(tmp_path))
    monkeypatch.setenv("DML_EXPLORER_UMAP", "off")
    points = np.random.default_rng(0).normal(size=(40, 4))
    assert projection.start_warmup() is None
    assert projection.umap_projection("never-computed", points) is None
    projection.write_cached("done", np.zeros((40, 2), np.float32))
    assert projection.umap_projection("done", points).shape == (40, 2)


@pytest.mark.slow
def test_umap_runs_in_background_and_lands_in_the_disk_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DML_EXPLORER_PROJECTION_CACHE", str(tmp_path))
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 5
    labels = np.repeat(np.arange(4), 30)
    points = centres[labels] + rng.normal(size=(120, 8)) * 0.1
    coordinates = projection.wait_for_umap("blobs", points, timeout=240)
    assert coordinates.shape == (120, 2) and np.isfinite(coordinates).all()
    assert np.array_equal(projection.read_cached("blobs"), coordinates)
    # Well separated blobs stay separated: each point's nearest 2-D neighbour shares its blob.
    distances = np.linalg.norm(coordinates[:, None] - coordinates[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    assert (labels[distances.argmin(axis=1)] == labels).mean() > 0.95


# --- checkpoint safety and discovery --------------------------------------------------------------


def test_env_var_roots_are_allowed(checkpoint_root: Path, tmp_path: Path) -> None:
    roots = allowed_roots()
    assert checkpoint_root.resolve() in roots
    assert (tmp_path / "runs").resolve() in roots
    assert Path(__file__).resolve().parent.parent / "checkpoints" in roots


def test_checkpoint_inside_a_root_resolves(checkpoint_root: Path) -> None:
    path = write_checkpoint(checkpoint_root / "sub" / "toy.safetensors")
    assert resolve_checkpoint(path) == path.resolve()
    entries = discover_checkpoints()
    assert [e.path for e in entries if e.path.is_relative_to(checkpoint_root)] == [path.resolve()]
    assert any(e.label.endswith("sub/toy.safetensors") for e in entries)


def test_path_outside_the_roots_is_refused(checkpoint_root: Path, tmp_path: Path) -> None:
    outside = write_checkpoint(tmp_path / "elsewhere" / "toy.safetensors")
    with pytest.raises(UnsafeCheckpointError, match="outside the checkpoint folders"):
        resolve_checkpoint(outside)
    with pytest.raises(UnsafeCheckpointError, match="outside"):
        resolve_checkpoint(checkpoint_root / ".." / "elsewhere" / "toy.safetensors")


def test_symlink_pointing_outside_is_refused(checkpoint_root: Path, tmp_path: Path) -> None:
    outside = write_checkpoint(tmp_path / "elsewhere" / "toy.safetensors")
    link = checkpoint_root / "link.safetensors"
    link.symlink_to(outside)
    with pytest.raises(UnsafeCheckpointError, match="outside"):
        resolve_checkpoint(link)
    assert all(e.path != outside.resolve() for e in discover_checkpoints())


def test_non_safetensors_file_is_refused(checkpoint_root: Path) -> None:
    pickled = checkpoint_root / "model.pt"
    torch.save({"weights": torch.zeros(2)}, pickled)
    with pytest.raises(UnsafeCheckpointError, match=r"not a \.safetensors file"):
        resolve_checkpoint(pickled)
    with pytest.raises(FileNotFoundError):
        resolve_checkpoint(checkpoint_root / "absent.safetensors")


def test_discovery_skips_foreign_safetensors(checkpoint_root: Path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(checkpoint_root / "foreign.safetensors"))
    (checkpoint_root / "truncated.safetensors").write_bytes(b"\x10\x00")
    assert not any(e.path.is_relative_to(checkpoint_root) for e in discover_checkpoints())


# --- analysis -------------------------------------------------------------------------------------


def _clustered(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(5), 6)
    points = rng.normal(size=(5, 4))[labels] + rng.normal(size=(30, 4)) * 0.8
    return points.astype(np.float32), labels


def test_retrieval_rows_match_an_explicit_loop() -> None:
    points, labels = _clustered()
    report = retrieval_report(points, labels, ks=(1,), keep_neighbors=6)
    queries = [0, 7, 29]
    rows = analysis.retrieval_rows(report, labels, queries, k=4)
    as_float = points.astype(np.float64)
    for row, query in zip(rows, queries, strict=True):
        distances = np.linalg.norm(as_float - as_float[query], axis=1)
        others = [i for i in np.argsort(distances, kind="stable") if i != query][:4]
        assert row.query == query and row.query_label == labels[query]
        assert row.neighbors == [int(i) for i in others]
        assert np.allclose(row.distances, distances[others], atol=1e-4)
        assert row.hits == [bool(labels[i] == labels[query]) for i in others]


def test_worst_queries_sorts_by_ap_and_skips_nan() -> None:
    ap = np.array([0.5, np.nan, 0.1, 0.9, 0.1, 0.3])
    assert analysis.worst_queries(ap, 3) == [2, 4, 5]
    assert analysis.worst_queries(ap, 10) == [2, 4, 5, 0, 3]


def test_random_queries_are_distinct_and_seeded() -> None:
    first = analysis.random_queries(50, 6, seed=3)
    assert first == analysis.random_queries(50, 6, seed=3)
    assert len(set(first)) == 6 and all(0 <= q < 50 for q in first)
    assert analysis.random_queries(3, 10, seed=0) == [0, 1, 2]


def test_metric_comparison_deltas_against_the_first() -> None:
    rows = analysis.metric_comparison(
        {"a": {"r@1": 0.5, "rho": 2.0}, "b": {"r@1": 0.75}, "c": {"r@1": 0.25, "rho": 1.0}}
    )
    by_metric = {row["metric"]: row for row in rows}
    assert by_metric["r@1"]["Δ b"] == pytest.approx(0.25)
    assert by_metric["r@1"]["Δ c"] == pytest.approx(-0.25)
    assert np.isnan(by_metric["rho"]["Δ b"]) and by_metric["rho"]["Δ c"] == pytest.approx(-1.0)


def test_density_table_names_classes() -> None:
    points, labels = _clustered()
    from dml_core.metrics import per_class_density

    rows = analysis.density_table(per_class_density(points, labels), [f"c{i}" for i in range(5)])
    assert [row["class"] for row in rows] == ["c0", "c1", "c2", "c3", "c4"]
    assert all(row["nearest class"] != row["class"] for row in rows)
    assert sum(row["items"] for row in rows) == 30


def test_png_data_uri_decodes_to_the_image() -> None:
    import base64
    import io

    from PIL import Image

    image = Image.new("RGB", (3, 2), (10, 20, 30))
    uri = analysis.png_data_uri(image)
    assert uri.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert decoded.size == (3, 2) and decoded.getpixel((0, 0)) == (10, 20, 30)


# --- figures --------------------------------------------------------------------------------------


def test_spectrum_figure_plots_the_values_on_the_chosen_scale() -> None:
    spectrum = np.array([0.6, 0.3, 0.1])
    linear = spectrum_figure({"a": spectrum, "b": spectrum[::-1]})
    assert [t.name for t in linear.data] == ["a", "b"]
    assert np.allclose(linear.data[0].y, spectrum) and list(linear.data[0].x) == [1, 2, 3]
    assert spectrum_figure({"a": spectrum}, log_scale=True).layout.yaxis.type == "log"
    long = "checkpoints/glyphs-finetune-margin-rho0.35.safetensors"
    wrapped = spectrum_figure({long: spectrum, "b": spectrum})
    assert wrapped.data[0].name.replace("<br>", "") == long and "<br>" in wrapped.data[0].name
    assert wrapped.layout.margin.t > linear.layout.margin.t  # room for the extra legend line


def test_projection_figure_is_one_trace_with_row_indices() -> None:
    coordinates = np.arange(8.0).reshape(4, 2)
    figure = projection_figure(coordinates, np.array([0, 1, 1, 0]), ["x", "y"])
    assert len(figure.data) == 1
    assert list(figure.data[0].customdata) == [0, 1, 2, 3]
    assert list(figure.data[0].text) == ["#0 · x", "#1 · y", "#2 · y", "#3 · x"]
    assert figure.layout.dragmode is None  # Streamlit's pan mode: a click selects a point
    assert figure.layout.xaxis.range is None


def test_aligned_projections_share_one_frame() -> None:
    first = np.array([[0.0, 0.0], [10.0, 5.0]])
    second = np.array([[-2.0, 1.0], [4.0, 9.0]])
    x0, x1, y0, y1 = common_extent([first, second], pad=0.1)
    assert (x0, x1) == pytest.approx((-3.2, 11.2)) and (y0, y1) == pytest.approx((-0.9, 9.9))
    figure = projection_figure(second, np.arange(2), extent=(x0, x1, y0, y1))
    assert list(figure.layout.xaxis.range) == [x0, x1]
    assert list(figure.layout.yaxis.range) == [y0, y1]


def test_retrieval_grid_borders_follow_hits() -> None:
    row = analysis.RetrievalRow(3, 1, [5, 6, 7], [0.1, 0.2, 0.3], [True, False, True])
    page = retrieval_grid_html([row], lambda i: f"data:image/png;base64,{i}", str)
    assert page.count(QUERY_BORDER) == 1
    assert page.count(HIT_BORDER) == 2 and page.count(MISS_BORDER) == 1
    assert "d=0.200" in page and "base64,6" in page


def test_curves_figure_overlays_runs_in_every_panel() -> None:
    series = {"loss": ([1, 2], [1.0, 0.5]), "test/recall@1": ([1], [0.4])}
    figure = curves_figure({"a": series, "b": series})
    assert len(figure.data) == 2 * len(CURVE_PANELS)
    assert sum(trace.showlegend for trace in figure.data) == 2


def test_wrap_title_breaks_long_labels_at_separators() -> None:
    assert wrap_title("runs/glyphs-margin-rho/last.safetensors", 16) == (
        "runs/glyphs-<br>margin-rho/last.<br>safetensors"
    )
    assert wrap_title("short.safetensors", 32) == "short.safetensors"
    assert wrap_title("a" * 20, 8) == "aaaaaaaa<br>aaaaaaaa<br>aaaa"
    assert wrap_title("<b>", 8) == "&lt;b&gt;"
    lines = wrap_title("x/" * 30, 10).split("<br>")
    assert all(len(line) <= 10 for line in lines) and "".join(lines) == "x/" * 30
    figure = projection_figure(np.zeros((2, 2)), np.arange(2), title="a<br>b<br>c")
    assert figure.layout.margin.t == 80  # room for the extra title lines


def write_oml_checkpoint(folder: Path) -> Path:
    """An untrained small CNN on a tiny OML dataset CSV whose validation half is queries (even
    items) against a gallery (odd items); the checkpoint stores no evaluation."""
    import csv

    from PIL import Image

    from dml_core.models import build_model

    rows = []
    for label in range(4):
        for item in range(4):
            path = folder / "images" / f"{label}-{item}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 16), (60 * label, 40 * item, 90)).save(path)
            validation = label >= 2
            query = item % 2 == 0
            flags = (str(query), str(not query)) if validation else ("", "")
            split = "validation" if validation else "train"
            rows.append([label, str(path.relative_to(folder)), split, *flags])
    table = folder / "dataset.csv"
    with open(table, "w", newline="") as handle:
        csv.writer(handle).writerows([["label", "path", "split", "is_query", "is_gallery"], *rows])
    settings = {**preset("glyphs"), "dataset": "csv", "data_root": str(table)}
    config = TrainConfig.from_dict({**settings, "image_size": 16, "embed_dim": 8})
    model = build_model("small_cnn", 8, pretrained=None, in_channels=3)
    metadata = {"kind": "last", "config": config.to_dict(), "model": model.config(), "history": []}
    return save_checkpoint(folder / "oml.safetensors", model, metadata)


def test_a_computed_evaluation_is_cached_with_its_query_gallery_masks(
    checkpoint_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app import sources
    from app.cache import cache_key, read_arrays, write_arrays
    from app.checkpoints import checkpoint_evaluation

    monkeypatch.setenv("DML_EXPLORER_PROJECTION_CACHE", str(tmp_path / "cache"))
    checkpoint = write_oml_checkpoint(checkpoint_root)
    computed = checkpoint_evaluation(checkpoint)
    assert computed.source == "computed" and "no stored evaluation" in computed.note
    np.testing.assert_array_equal(computed.evaluation.is_query, [True, False] * 4)
    np.testing.assert_array_equal(computed.evaluation.is_gallery, [False, True] * 4)
    cached = checkpoint_evaluation(checkpoint)
    assert cached.source == "cache"
    for name in ("embeddings", "labels", "item_ids", "pca", "is_query", "is_gallery"):
        np.testing.assert_array_equal(
            getattr(cached.evaluation, name), getattr(computed.evaluation, name)
        )
    assert cached.evaluation.metrics == computed.evaluation.metrics
    assert cached.evaluation.metrics["test/num_queries"] == 4
    # Opened through the app's one road, the masks reach the pages.
    opened = sources.open_split(sources.resolve_source(checkpoint))
    assert opened.origin == "cache" and opened.protocol == "queries against the gallery"
    np.testing.assert_array_equal(opened.is_query, computed.evaluation.is_query)
    # A cache hit returns what is on disk (proven by changing it); a rewritten file misses.
    key = cache_key(checkpoint, "test", "evaluation")
    arrays = read_arrays(key)
    write_arrays(key, **{**arrays, "embeddings": arrays["embeddings"] * 0})
    assert not checkpoint_evaluation(checkpoint).evaluation.embeddings.any()
    os.utime(checkpoint, ns=(1, 1))
    assert checkpoint_evaluation(checkpoint).source == "computed"


# --- settings, cache and discovery ----------------------------------------------------------------


def test_default_ks_are_the_train_configs() -> None:
    from app.settings import DEFAULT_KS

    assert DEFAULT_KS == tuple(TrainConfig.from_dict(preset("glyphs")).eval_ks) == (1, 2, 4, 8)


def test_cache_key_follows_the_files_size_at_equal_mtime(tmp_path: Path) -> None:
    from app.cache import cache_key

    source = tmp_path / "a.safetensors"
    source.write_bytes(b"x")
    mtime = source.stat().st_mtime_ns
    first = cache_key(source, "test", "umap")
    source.write_bytes(b"xy")
    os.utime(source, ns=(mtime, mtime))
    assert cache_key(source, "test", "umap") != first


def test_discovery_reads_each_header_once_per_file_version(
    checkpoint_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app import checkpoints

    path = write_checkpoint(checkpoint_root / "toy.safetensors").resolve()
    (checkpoint_root / "broken.safetensors").write_bytes(b"\x10\x00")
    reads: list[Path] = []
    original = checkpoints.read_metadata

    def counting_read_metadata(target: Path) -> dict:
        reads.append(Path(target))
        return original(target)

    monkeypatch.setattr(checkpoints, "read_metadata", counting_read_metadata)
    first = [e.path for e in discover_checkpoints() if e.path.is_relative_to(checkpoint_root)]
    assert first == [path]
    mine = [p for p in reads if p.is_relative_to(checkpoint_root)]
    assert sorted(p.name for p in mine) == ["broken.safetensors", "toy.safetensors"]
    reads.clear()
    assert [e.path for e in discover_checkpoints() if e.path.is_relative_to(checkpoint_root)] == [
        path
    ]
    assert not [p for p in reads if p.is_relative_to(checkpoint_root)]
    os.utime(path, ns=(1, path.stat().st_mtime_ns + 10**9))  # a rewritten file is read again
    discover_checkpoints()
    assert [p for p in reads if p.is_relative_to(checkpoint_root)] == [path]


# --- training curves ------------------------------------------------------------------------------


def test_one_point_curves_get_unit_axes_and_whole_epoch_ticks() -> None:
    series = {"loss": ([5], [0.7]), "test/recall@1": ([1], [0.4]), "train/pi_ratio": ([1], [2.0])}
    layout = curves_figure({"a": series}).layout
    assert list(layout.xaxis2.range) == [0.5, 1.5] and layout.xaxis2.dtick == 1
    assert layout.xaxis2.tickmode == "linear" and layout.xaxis2.tick0 == 0
    assert list(layout.yaxis2.range) == [0, 1.02]  # Recall@1
    assert list(layout.yaxis3.range) == [0, 1.02]  # MAP@R
    assert layout.yaxis5.rangemode == "tozero"  # π_ratio


def test_integer_ticks_use_round_steps() -> None:
    assert integer_ticks([1, 12])["dtick"] == 2
    assert integer_ticks([0, 200])["dtick"] == 50
    assert integer_ticks([3])["range"] == [2.5, 3.5]


def test_undefined_metric_is_written_na_not_plotted() -> None:
    two_d = {"loss": ([1], [0.5]), "test/recall@1": ([1], [0.4]), "train/rho@2": None}
    wide = {"loss": ([1], [0.5]), "test/recall@1": ([1], [0.4]), "train/rho@2": ([1], [0.3])}
    figure = curves_figure({"toy": two_d, "glyphs": wide})
    rho_traces = [t for t in figure.data if t.xaxis == "x4"]
    assert [t.name for t in rho_traces] == ["glyphs"]
    notes = [a.text for a in figure.layout.annotations if "n/a" in a.text]
    assert len(notes) == 1 and "toy" in notes[0] and notes[0].count("glyphs") == 0
    alone = curves_figure({"toy": two_d})
    assert not [t for t in alone.data if t.xaxis == "x4"]
    assert any(a.text.startswith("n/a") for a in alone.layout.annotations)
