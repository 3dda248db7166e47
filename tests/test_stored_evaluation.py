"""The evaluation a checkpoint carries: round trip, old checkpoints, corrupt sections, training end,
``embed`` and ``project`` on the command line, snapshots with PCA."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from dml_core.cli import main
from dml_core.config import TrainConfig
from dml_core.engine.checkpoint import load_checkpoint, load_tensors
from dml_core.engine.checkpoint_header import read_metadata
from dml_core.engine.evaluation import embed_checkpoint
from dml_core.engine.stored_evaluation import (
    build_evaluation,
    evaluate_and_store,
    open_evaluation,
    write_evaluation,
)
from dml_core.engine.stored_section import (
    SECTION_KEY,
    StoredEvaluationError,
    has_evaluation,
    read_evaluation,
)
from dml_core.engine.trainer import Trainer
from dml_core.metrics import retrieval_metrics
from dml_core.presets import preset

FIXTURE_V1 = Path(__file__).parent / "fixtures" / "checkpoint_v1_toy.safetensors"


@pytest.fixture
def old_checkpoint(tmp_path: Path) -> Path:
    """A copy of the checkpoint written before the section existed."""
    return Path(shutil.copy(FIXTURE_V1, tmp_path / "toy.safetensors"))


def test_an_old_checkpoint_has_no_section_and_still_opens(old_checkpoint: Path) -> None:
    assert not has_evaluation(old_checkpoint)
    assert read_evaluation(old_checkpoint) is None
    evaluation, note = open_evaluation(old_checkpoint, device="cpu")
    assert note is not None and "no stored evaluation" in note
    embedded = embed_checkpoint(old_checkpoint, "test", device="cpu")
    np.testing.assert_allclose(
        evaluation.embeddings.astype(np.float32), embedded.embeddings.numpy(), atol=1e-3
    )
    assert evaluation.umap is None and evaluation.pca.shape == (len(embedded.labels), 2)


def test_round_trip_keeps_weights_and_header(old_checkpoint: Path) -> None:
    header_before = read_metadata(old_checkpoint)
    weights_before = load_tensors(old_checkpoint, "model")
    stored = evaluate_and_store(old_checkpoint, device="cpu")
    read = read_evaluation(old_checkpoint)
    assert read is not None and has_evaluation(old_checkpoint)
    assert read.embeddings.dtype == np.float16 and read.embeddings.shape == (60, 2)
    np.testing.assert_array_equal(read.embeddings, stored.embeddings)
    np.testing.assert_array_equal(read.labels, stored.labels)
    np.testing.assert_array_equal(read.item_ids, np.arange(60))
    np.testing.assert_array_equal(read.pca, stored.pca)
    np.testing.assert_array_equal(read.umap, stored.umap)
    assert read.class_names == stored.class_names and len(read.class_names) > read.labels.max()
    assert read.metrics == stored.metrics and 0 <= read.metrics["test/recall@1"] <= 1
    assert read.umap_settings["knn"] == "faiss" and read.umap_settings["init"] == "pca"
    assert read.epoch == header_before["epoch"]
    # The checkpoint itself is what it was: same header, same weights, same model.
    assert read_metadata(old_checkpoint) == header_before
    for name, tensor in load_tensors(old_checkpoint, "model").items():
        assert torch.equal(tensor, weights_before[name]), name
    model, _ = load_checkpoint(old_checkpoint)
    assert model(torch.rand(3, 2)).shape == (3, 2)
    # The stored metrics are those of the embeddings (recomputed the usual way).
    recomputed = embed_checkpoint(old_checkpoint, "test", device="cpu")
    np.testing.assert_allclose(
        read.embeddings.astype(np.float32), recomputed.embeddings.numpy(), atol=1e-3
    )


def test_writing_twice_replaces_the_section(old_checkpoint: Path) -> None:
    first = evaluate_and_store(old_checkpoint, device="cpu", umap=None)
    assert read_evaluation(old_checkpoint).umap is None
    changed = dataclasses.replace(first, metrics={"test/recall@1": 0.25})
    write_evaluation(old_checkpoint, changed)
    assert read_evaluation(old_checkpoint).metrics == {"test/recall@1": 0.25}
    names = load_file(str(old_checkpoint)).keys()
    assert sum(name.startswith("evaluation.") for name in names) == 4


def _rewrite_header(path: Path, **changes: str) -> None:
    with safe_open(str(path), framework="pt") as handle:
        header = dict(handle.metadata())
    tensors = load_file(str(path))
    save_file(tensors, str(path), metadata={**header, **changes})


@pytest.mark.parametrize("damage", ["json", "version", "rows", "labels", "missing"])
def test_a_corrupt_section_is_one_error_and_open_falls_back_to_computing(
    old_checkpoint: Path, damage: str
) -> None:
    good = evaluate_and_store(old_checkpoint, device="cpu", umap=None)
    if damage == "json":
        _rewrite_header(old_checkpoint, **{SECTION_KEY: "{not json"})
    elif damage == "version":
        _rewrite_header(old_checkpoint, **{SECTION_KEY: json.dumps({"section_version": 99})})
    elif damage == "rows":
        write_evaluation(old_checkpoint, dataclasses.replace(good, pca=good.pca[:10]))
    elif damage == "labels":
        write_evaluation(old_checkpoint, dataclasses.replace(good, class_names=["only one"]))
    else:
        tensors = {k: v for k, v in load_file(str(old_checkpoint)).items() if k != "evaluation.pca"}
        with safe_open(str(old_checkpoint), framework="pt") as handle:
            header = dict(handle.metadata())
        save_file(tensors, str(old_checkpoint), metadata=header)
    with pytest.raises(StoredEvaluationError, match="stored evaluation section"):
        read_evaluation(old_checkpoint)
    # The checkpoint still opens, and the evaluation is computed instead of read.
    load_checkpoint(old_checkpoint)
    evaluation, note = open_evaluation(old_checkpoint, device="cpu")
    assert note is not None and "stored evaluation section" in note
    np.testing.assert_array_equal(evaluation.embeddings, good.embeddings)
    assert evaluation.metrics == pytest.approx(good.metrics, nan_ok=True)


def test_masks_score_the_section_and_round_trip(old_checkpoint: Path) -> None:
    """Under is_query/is_gallery the stored metrics are the query/gallery ones and the masks
    read back; a section with one mask, or a mask that is not 0/1, is refused."""
    good = evaluate_and_store(old_checkpoint, device="cpu", umap=None)
    rng = np.random.default_rng(0)
    is_query = rng.random(len(good)) < 0.5
    is_gallery = ~is_query
    is_gallery[:5] = True  # items that are both
    points = good.embeddings.astype(np.float32)
    masked = build_evaluation(
        points, good.labels, good.item_ids, good.class_names, ks=(1, 2), umap=None,
        is_query=is_query, is_gallery=is_gallery,
    )  # fmt: skip
    expected = retrieval_metrics(
        points, good.labels, ks=(1, 2), is_query=is_query, is_gallery=is_gallery
    )
    for key in ("recall@1", "recall@2", "map@r", "num_queries", "num_gallery"):
        assert masked.metrics[f"test/{key}"] == pytest.approx(expected[key]), key
    assert masked.metrics["test/recall@1"] != pytest.approx(good.metrics["test/recall@1"])
    write_evaluation(old_checkpoint, masked)
    read = read_evaluation(old_checkpoint)
    np.testing.assert_array_equal(read.is_query, is_query)
    np.testing.assert_array_equal(read.is_gallery, is_gallery)
    assert read.metrics == masked.metrics
    tensors = load_file(str(old_checkpoint))
    with safe_open(str(old_checkpoint), framework="pt") as handle:
        header = dict(handle.metadata())
    for broken in (
        {k: v for k, v in tensors.items() if k != "evaluation.is_gallery"},
        {**tensors, "evaluation.is_query": torch.full((len(good),), 2, dtype=torch.uint8)},
    ):
        save_file(broken, str(old_checkpoint), metadata=header)
        with pytest.raises(StoredEvaluationError, match="is_query/is_gallery"):
            read_evaluation(old_checkpoint)


def test_training_ends_with_the_section_in_best_and_last(tmp_path: Path) -> None:
    config = TrainConfig.from_dict(
        {**preset("toy"), "epochs": 2, "eval_every": 1, "snapshots": "on"}
    )
    Trainer(config, tmp_path).run()
    for kind in ("best", "last"):
        path = tmp_path / f"{kind}.safetensors"
        evaluation = read_evaluation(path)
        assert evaluation is not None, kind
        assert evaluation.epoch == read_metadata(path)["epoch"]
        embedded = embed_checkpoint(path, "test", device="cpu")
        np.testing.assert_allclose(
            evaluation.embeddings.astype(np.float32), embedded.embeddings.numpy(), atol=1e-3
        )
        assert evaluation.umap is not None and evaluation.umap.shape == (len(embedded.labels), 2)
    last = read_metadata(tmp_path / "last.safetensors")
    assert read_evaluation(tmp_path / "last.safetensors").metrics["test/recall@1"] == (
        pytest.approx(last["history"][-1]["test/recall@1"])
    )
    snapshot = np.load(tmp_path / "snapshots" / "epoch_002.npz")
    assert snapshot["pca"].shape == (len(snapshot["labels"]), 2)


def test_the_end_of_a_run_stores_the_embeddings_its_evaluations_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``best`` and ``last`` saved right after an evaluation keep that evaluation's test embeddings
    (nothing is embedded again); a ``last`` saved after a stop mid-epoch, whose weights moved since,
    is embedded again from its file."""
    import dml_core.engine.stored_evaluation as stored

    embedded_again: list[str] = []
    real_embed = stored.embed_checkpoint

    def counting_embed(path: Path, *args: object, **kwargs: object) -> object:
        embedded_again.append(Path(path).name)
        return real_embed(path, *args, **kwargs)

    monkeypatch.setattr(stored, "embed_checkpoint", counting_embed)
    config = TrainConfig.from_dict({**preset("toy"), "epochs": 3, "eval_every": 1})
    Trainer(config, tmp_path / "whole").run()
    assert embedded_again == []

    trainer = Trainer(config, tmp_path / "stopped")
    evaluated = False
    for event in trainer.steps():
        evaluated = evaluated or event["kind"] == "eval"
        if evaluated and event["kind"] == "step":
            trainer.request_stop()
    assert embedded_again == ["last.safetensors"]
    for kind in ("best", "last"):
        path = tmp_path / "stopped" / f"{kind}.safetensors"
        recomputed = real_embed(path, "test", device="cpu")
        np.testing.assert_allclose(
            read_evaluation(path).embeddings.astype(np.float32),
            recomputed.embeddings.numpy(),
            atol=1e-3,
        )


def test_embed_and_project_store_the_section_and_skip_foreign_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = Path(shutil.copy(FIXTURE_V1, tmp_path / "a.safetensors"))
    second = Path(shutil.copy(FIXTURE_V1, tmp_path / "b.safetensors"))
    bare = tmp_path / "backbone.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, str(bare))
    assert main(["embed", "--checkpoint", str(first), "--out", str(tmp_path / "a.npz")]) == 0
    assert read_evaluation(first) is not None
    assert main(["project", str(second), str(bare), "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert read_evaluation(second) is not None
    assert "skipped" in err and "backbone.safetensors" in err
    assert json.loads(out.strip().splitlines()[-1])["items"] == 60
    npz = np.load(tmp_path / "a.npz")
    np.testing.assert_allclose(
        read_evaluation(first).embeddings.astype(np.float32), npz["embeddings"], atol=1e-3
    )
