"""Embedding files in the app: path safety, discovery, thumbnails, export, and the Inspect and
Compare pages opening them (``streamlit.testing.v1.AppTest``)."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from app import item_images, sources
from app.checkpoints import UnsafeCheckpointError
from dml_core.metrics import retrieval_metrics

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
CLASSES, PER_CLASS, DIM = 4, 6, 8


def _write_npz(path: Path, seed: int, *, paths: list[str] | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(CLASSES), PER_CLASS)
    centres = rng.normal(size=(CLASSES, DIM))
    embeddings = (centres[labels] + 0.8 * rng.normal(size=(len(labels), DIM))).astype(np.float32)
    arrays = {
        "embeddings": embeddings,
        "labels": labels,
        "class_names": np.array([f"kind{c}" for c in range(CLASSES)]),
    }
    if paths is not None:
        arrays["paths"] = np.array(paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return arrays


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    extra = tmp_path / "extra"
    images = extra / "images"
    images.mkdir(parents=True)
    names = []
    for index in range(CLASSES * PER_CLASS):
        Image.new("RGB", (12, 12), (index * 9 % 255, 40, 90)).save(images / f"{index}.png")
        names.append(f"images/{index}.png")
    _write_npz(extra / "model_a.npz", 0, paths=names)
    _write_npz(extra / "model_b.npz", 1, paths=names)
    _write_npz(extra / "snapshots" / "epoch_001.npz", 2)
    other = tmp_path / "other.npz"
    _write_npz(other, 3)
    monkeypatch.setenv("DML_EXPLORER_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("DML_EXPLORER_CHECKPOINT_DIRS", str(extra))
    monkeypatch.setenv("DML_EXPLORER_PROJECTION_CACHE", str(tmp_path / "projections"))
    monkeypatch.setenv("DML_EXPLORER_UMAP", "off")
    return {"extra": extra, "outside": other, "tmp": tmp_path}


def test_embedding_files_are_opened_only_under_the_roots(roots: dict[str, Path]) -> None:
    source = sources.resolve_source(roots["extra"] / "model_a.npz")
    assert source.kind == "embeddings" and source.label == "extra/model_a.npz"
    with pytest.raises(UnsafeCheckpointError, match="outside the folders"):
        sources.resolve_source(roots["outside"])
    link = roots["extra"] / "link.npz"
    link.symlink_to(roots["outside"])
    with pytest.raises(UnsafeCheckpointError):
        sources.resolve_source(link)
    with pytest.raises(UnsafeCheckpointError, match=r"not a \.safetensors"):
        sources.resolve_source(roots["extra"] / "images" / "0.png")
    found = [s.label for s in sources.discover_embedding_files()]
    assert found == ["extra/model_a.npz", "extra/model_b.npz"]  # no snapshot, no link outside


def test_thumbnails_only_from_paths_under_the_roots(roots: dict[str, Path]) -> None:
    source = sources.resolve_source(roots["extra"] / "model_a.npz")
    opened = sources.open_split(source)
    thumbnail = item_images.thumbnail_getter(opened)
    assert thumbnail is not None and thumbnail(3, 16).size == (16, 16)
    outside_images = roots["tmp"] / "pics"
    outside_images.mkdir()
    Image.new("RGB", (4, 4)).save(outside_images / "x.png")
    paths = [str(outside_images / "x.png")] * (CLASSES * PER_CLASS)
    _write_npz(roots["extra"] / "outside_paths.npz", 0, paths=paths)
    source = sources.resolve_source(roots["extra"] / "outside_paths.npz")
    opened = sources.open_split(source)
    assert item_images.thumbnail_getter(opened) is None
    assert "under the allowed folders" in item_images.thumbnail_note(opened)


def test_signatures_follow_the_items_and_export_zips_the_files(roots: dict[str, Path]) -> None:
    a = sources.open_split(sources.resolve_source(roots["extra"] / "model_a.npz"))
    b = sources.open_split(sources.resolve_source(roots["extra"] / "model_b.npz"))
    assert a.signature == b.signature
    arrays = dict(np.load(roots["extra"] / "model_b.npz"))
    arrays["labels"] = arrays["labels"][::-1].copy()
    np.savez(roots["extra"] / "shuffled.npz", **arrays)
    c = sources.open_split(sources.resolve_source(roots["extra"] / "shuffled.npz"))
    assert c.signature != a.signature
    for fmt, expected in (
        ("tensorboard", {"tensors.tsv", "metadata.tsv", "sprite.png", "projector_config.pbtxt"}),
        ("csv", {"embeddings.csv"}),
    ):
        thumbnail = item_images.thumbnail_getter(a)
        with zipfile.ZipFile(io.BytesIO(sources.export_zip(a, fmt, thumbnail))) as archive:
            assert set(archive.namelist()) == expected


def _open(page: str) -> AppTest:
    app = AppTest.from_file(MAIN, default_timeout=60)
    app.run()
    app.switch_page(f"views/{page}.py").run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def test_inspect_opens_an_npz_and_shows_a_clicked_points_neighbours(
    roots: dict[str, Path],
) -> None:
    app = _open("inspect")
    app.selectbox(key="inspect-checkpoint").set_value("extra/model_a.npz").run()
    assert not app.exception, [e.value for e in app.exception]
    table = next(f.value for f in app.dataframe if "recall@1" in f.value.index)
    arrays = np.load(roots["extra"] / "model_a.npz")
    expected = retrieval_metrics(arrays["embeddings"], arrays["labels"], ks=(1,))
    assert table.loc["recall@1", "test"] == pytest.approx(expected["recall@1"])
    names = list(table.index)  # Recall@k by k first, MAP@R right after them
    recalls = [name for name in names if name.startswith("recall@")]
    assert names[: len(recalls)] == sorted(recalls, key=lambda n: int(n.split("@")[1]))
    assert names[0] == "recall@1" and names[len(recalls)] == "map@r"
    # What a click stores (the browser test clicks for real): one selected item.
    app.session_state["inspect-projection-selected"] = [5]
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("Item #5 · kind0" in m.value for m in app.markdown)
    # The strict query box.
    app.text_input(key="inspect-retrieval-queries").input("4000, -1, abc").run()
    assert any("'4000' is out of range" in e.value and "'abc'" in e.value for e in app.error)


def test_compare_two_files_shows_per_class_delta_and_disagreements(
    roots: dict[str, Path],
) -> None:
    app = _open("compare")
    app.multiselect(key="compare-checkpoints").set_value(
        ["extra/model_a.npz", "extra/model_b.npz"]
    ).run()
    assert not app.exception, [e.value for e in app.exception]
    assert not app.warning
    metrics = next(f.value for f in app.dataframe if "metric" in f.value.columns)
    assert metrics["metric"].iloc[0] == "test/recall@1"
    per_class = next(f.value for f in app.dataframe if "Δ (B − A)" in f.value.columns)
    assert len(per_class) == CLASSES
    tab_labels = [tab.label for tab in app.tabs]
    assert any(label.startswith("A right, B wrong") for label in tab_labels)
    assert any(label.startswith("B right, A wrong") for label in tab_labels)
    assert isinstance(per_class, pd.DataFrame)


def test_compare_warns_when_the_items_differ(roots: dict[str, Path]) -> None:
    arrays = dict(np.load(roots["extra"] / "model_b.npz"))
    for name in ("embeddings", "labels", "paths"):
        arrays[name] = arrays[name][:-3]
    np.savez(roots["extra"] / "fewer.npz", **arrays)
    app = _open("compare")
    app.multiselect(key="compare-checkpoints").set_value(
        ["extra/model_a.npz", "extra/fewer.npz"]
    ).run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("per-query comparisons are turned off" in w.value for w in app.warning)
    assert not [f for f in app.dataframe if "Δ (B − A)" in f.value.columns]


def test_unreadable_files_are_listed_with_their_reason_and_inspect_goes_on(
    roots: dict[str, Path],
) -> None:
    import torch
    from safetensors.torch import save_file

    extra = roots["extra"]
    (extra / "noise.safetensors").write_bytes(np.random.default_rng(0).bytes(64))
    save_file({"w": torch.zeros(2)}, str(extra / "padded.safetensors"))
    with open(extra / "padded.safetensors", "ab") as handle:
        handle.write(b"tail")
    (extra / "broken.npz").write_bytes(b"not a zip archive")
    save_file({"w": torch.zeros(2)}, str(extra / "weights.safetensors"))  # plain weights
    unreadable: list[str] = []
    found = [s.label for s in sources.discover_sources(unreadable=unreadable)]
    # Plain weights (as the shipped --pretrained backbone) are neither listed nor "unreadable".
    assert not [line for line in unreadable if "weights.safetensors" in line]
    assert not [line for line in unreadable if "glyphs-backbone" in line]
    assert [label for label in found if label.startswith("extra/")] == [
        "extra/model_a.npz",
        "extra/model_b.npz",
    ]
    unreadable = [line for line in unreadable if line.startswith("extra/")]  # not the repo's
    assert [line.split(": ", 1)[0] for line in unreadable] == [
        "extra/noise.safetensors",
        "extra/padded.safetensors",
        "extra/broken.npz",
    ]
    noise, padded, broken = (line.split(": ", 1)[1] for line in unreadable)
    assert noise.startswith("is not a safetensors file") and "never unpickles" in noise
    assert padded.startswith("has 4 bytes after its tensor data")
    assert broken.startswith("BadZipFile")
    assert sources.discover_sources() == sources.discover_sources(unreadable=[])  # list optional

    app = _open("inspect")
    assert any(e.label.endswith("unreadable files left out") for e in app.expander)
    shown = [t.value for t in app.text]
    assert all(f"unreadable: {line}" in shown for line in unreadable)
    app.selectbox(key="inspect-checkpoint").set_value("extra/model_a.npz").run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("recall@1" in f.value.index for f in app.dataframe)


def test_a_class_name_that_is_not_utf8_is_shown_with_a_replacement_character(
    roots: dict[str, Path],
) -> None:
    from app import analysis

    folder_name = os.fsdecode(b"caf\xe9")  # a Latin-1 folder name, as os.listdir returns it
    assert folder_name == "caf\udce9"
    assert analysis.display_names([folder_name, "kind1", 3, "\ud800x"]) == [
        "caf\ufffd",
        "kind1",
        "3",
        "\ufffd\ufffd\ufffdx",
    ]
    arrays = dict(np.load(roots["extra"] / "model_a.npz"))
    arrays["class_names"] = np.array([folder_name, "kind1", "kind2", "kind3"])
    np.savez(roots["extra"] / "latin1.npz", **arrays)
    assert (
        sources.open_split(sources.resolve_source(roots["extra"] / "latin1.npz")).class_names[0]
        == "caf\ufffd"
    )
    app = _open("inspect")
    app.selectbox(key="inspect-checkpoint").set_value("extra/latin1.npz").run()
    assert not app.exception, [e.value for e in app.exception]
    app.session_state["inspect-projection-selected"] = [5]  # item 5 is of class 0
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("Item #5 · caf\ufffd" in m.value for m in app.markdown)
