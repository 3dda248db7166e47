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
