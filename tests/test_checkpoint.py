"""Checkpoints are safetensors only: pickle, truncated, foreign, old and mismatched files are refused."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dml_core.engine.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from dml_core.models import build_model


def metadata_for(model) -> dict:
    return {"model": model.config(), "config": {}, "epoch": 3}


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    model = build_model("mlp", 2)
    return save_checkpoint(tmp_path / "model.safetensors", model, metadata_for(model))


def test_round_trip(checkpoint: Path) -> None:
    model, metadata = load_checkpoint(checkpoint)
    assert metadata["format_version"] == FORMAT_VERSION and metadata["epoch"] == 3
    assert model(torch.rand(4, 2)).shape == (4, 2)


def test_loss_parameters_are_stored_apart(tmp_path: Path) -> None:
    model = build_model("mlp", 2)
    loss = torch.nn.Module()
    loss.beta = torch.nn.Parameter(torch.full((5,), 1.2))
    path = save_checkpoint(tmp_path / "m.safetensors", model, metadata_for(model), loss=loss)
    from dml_core.engine.checkpoint import load_tensors

    assert torch.equal(load_tensors(path, "loss")["beta"], torch.full((5,), 1.2))
    assert "beta" not in load_tensors(path, "model")


def test_pickle_is_refused_without_unpickling(tmp_path: Path) -> None:
    class Boom:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(path)
    torch.save({"w": torch.ones(2)}, tmp_path / "torch.pt")
    with pytest.raises(CheckpointError, match="pickle"):
        read_metadata(tmp_path / "torch.pt")
    assert not (tmp_path / "pwned").exists()


def test_truncated_file_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    data = checkpoint.read_bytes()
    for cut in (4, 20, len(data) - 10):
        truncated = tmp_path / f"cut{cut}.safetensors"
        truncated.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=r"truncated|not a safetensors|unreadable"):
            load_checkpoint(truncated)


def test_foreign_safetensors_and_unknown_version_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.ones(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a DML Explorer checkpoint"):
        load_checkpoint(foreign)
    future = tmp_path / "future.safetensors"
    save_file(
        {"w": torch.ones(2)},
        str(future),
        metadata={"dml_explorer": json.dumps({"format_version": 99})},
    )
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(future)


def test_mismatched_architecture_is_refused(tmp_path: Path) -> None:
    model = build_model("mlp", 2)
    wrong = {**metadata_for(model), "model": {**model.config(), "embed_dim": 3}}
    path = save_checkpoint(tmp_path / "wrong.safetensors", model, wrong)
    with pytest.raises(CheckpointError, match="do not fit the architecture"):
        load_checkpoint(path)


def test_failed_write_keeps_the_previous_file(checkpoint: Path) -> None:
    before = checkpoint.read_bytes()
    model = build_model("mlp", 2)
    with pytest.raises(TypeError):
        save_checkpoint(checkpoint, model, {"unserialisable": object()})
    assert checkpoint.read_bytes() == before
    assert [p.name for p in checkpoint.parent.iterdir()] == [checkpoint.name]


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    import os

    previous = os.umask(0o022)
    try:
        model = build_model("mlp", 2)
        path = save_checkpoint(tmp_path / "shared.safetensors", model, metadata_for(model))
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_header_length_that_looks_like_a_pickle_opcode_is_still_read(tmp_path: Path) -> None:
    """A safetensors header length whose low bytes are 0x80 0x02 (pickle's PROTO 2) is valid."""
    import struct

    model = build_model("mlp", 2)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, {**metadata_for(model), "note": ""})
    (base_size,) = struct.unpack("<Q", path.read_bytes()[:8])
    target = 0x10280  # safetensors pads headers to 8 bytes; one note character adds one byte
    for padding in range(target - base_size - 16, target - base_size + 16):
        save_checkpoint(path, model, {**metadata_for(model), "note": "x" * padding})
        (size,) = struct.unpack("<Q", path.read_bytes()[:8])
        if size == target:
            break
    else:
        pytest.fail("no padding gave the header length 0x…0280")
    assert path.read_bytes()[:2] == b"\x80\x02"
    assert read_metadata(path)["epoch"] == 3


FIXTURE_V1 = Path(__file__).parent / "fixtures" / "checkpoint_v1_toy.safetensors"


def test_a_checkpoint_written_before_the_trainer_split_still_opens_and_scores_the_same() -> None:
    """``checkpoints/toy-base.safetensors`` as committed before engine/assembly.py existed."""
    from dml_core.config import TrainConfig
    from dml_core.engine.evaluation import embed_checkpoint, evaluate_checkpoint

    metadata = read_metadata(FIXTURE_V1)
    assert metadata["format_version"] == 1 and metadata["kind"] == "last"
    assert metadata["selected_on"] == "test" and metadata["dataset"]["name"] == "toy_diagonal"
    assert TrainConfig.from_dict(metadata["config"]).dataset == "toy_diagonal"
    model, _ = load_checkpoint(FIXTURE_V1)
    assert model(torch.rand(5, 2)).shape == (5, 2)
    embedded = embed_checkpoint(FIXTURE_V1, "test", device="cpu")
    assert tuple(embedded.embeddings.shape) == (60, 2) and len(embedded.labels) == 60
    # Its stored history was computed on these weights at the time it was written.
    stored = metadata["history"][-1]
    metrics = evaluate_checkpoint(FIXTURE_V1, device="cpu")
    for key in ("test/recall@1", "test/map@r", "test/nmi", "test/f1"):
        assert metrics[key] == stored[key], key
    for key in ("test/rho@1", "test/pi_ratio", "train/rho@1", "train/pi_ratio"):
        assert metrics[key] == pytest.approx(stored[key], rel=1e-5), key


def test_train_state_round_trip(tmp_path: Path) -> None:
    from dml_core.engine.checkpoint import (
        STATE_FILE,
        TrainState,
        read_resume_point,
        run_header,
        save_run_checkpoint,
    )

    model = build_model("mlp", 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.rand(4, 2)).sum().backward()
    optimizer.step()
    loss = torch.nn.Module()
    loss.beta = torch.nn.Parameter(torch.full((3,), 1.2))
    best = {"metric": "val/recall@1", "value": 0.5, "epoch": 2}
    header = run_header(
        "last",
        config={"dataset": "toy_diagonal", "data_root": None},
        model_config=model.config(),
        class_names={"train": ["a", "b"], "test": ["c", "d"]},
        epoch=3,
        step=7,
        history=[{"epoch": 2, "val/recall@1": 0.5}],
        best=best,
    )
    state = TrainState(
        epoch=3,
        batch_in_epoch=1,
        step=7,
        optimizer=optimizer.state_dict(),
        scheduler={},
        torch_rng=torch.get_rng_state(),
        miner_rng=torch.Generator().manual_seed(5).get_state(),
        best_value=0.5,
        best_epoch=2,
    )
    with pytest.raises(FileNotFoundError, match=STATE_FILE):
        read_resume_point(tmp_path)
    save_run_checkpoint(tmp_path, header, model, loss, state)
    assert read_metadata(tmp_path / "last.safetensors")["selected_on"] == "val"
    point = read_resume_point(tmp_path)
    assert point.history == [{"epoch": 2, "val/recall@1": 0.5}]
    assert torch.equal(point.loss["beta"], torch.full((3,), 1.2))
    assert point.model.keys() == model.state_dict().keys()
    assert (point.state.epoch, point.state.batch_in_epoch, point.state.step) == (3, 1, 7)
    assert torch.equal(point.state.torch_rng, state.torch_rng)
    assert torch.equal(point.state.miner_rng, state.miner_rng)
    restored = torch.optim.Adam(model.parameters(), lr=0.1)
    restored.load_state_dict(point.state.optimizer)
    assert torch.equal(
        restored.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"]
    )
