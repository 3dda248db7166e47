"""Checkpoints are safetensors only: pickle, truncated, foreign, old and mismatched files are refused."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dml_core.engine.checkpoint import load_checkpoint, save_checkpoint
from dml_core.engine.checkpoint_header import FORMAT_VERSION, CheckpointError, read_metadata
from dml_core.models import build_model


def metadata_for(model) -> dict:
    config = {"dataset": "toy_diagonal", "arch": "mlp", "embed_dim": 2}  # read_metadata checks it
    return {"model": model.config(), "config": config, "epoch": 3}


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


def _run_pair(tmp_path: Path, step: int):
    """A run folder's ``last`` + train state at ``step`` (the pieces ``save_run_checkpoint`` takes)."""
    from dml_core.engine.checkpoint import TrainState, run_header

    model = build_model("mlp", 2)
    loss = torch.nn.Module()
    header = run_header(
        "last",
        config={"dataset": "toy_diagonal", "data_root": None},
        model_config=model.config(),
        class_names={"train": ["a"], "test": ["b"]},
        epoch=step,
        step=step,
        history=[],
        best={"metric": "test/recall@1", "value": None, "epoch": None},
    )
    state = TrainState(
        epoch=step,
        batch_in_epoch=0,
        step=step,
        optimizer={},
        scheduler={},
        torch_rng=torch.get_rng_state(),
        miner_rng=torch.Generator().get_state(),
        best_value=None,
        best_epoch=None,
    )
    return header, model, loss, state


def test_an_interrupted_commit_is_finished_or_undone(tmp_path: Path) -> None:
    """The pending ``last`` becomes ``last`` only once the train state of its step is committed."""
    from dml_core.engine.checkpoint import (
        PENDING_LAST,
        STATE_FILE,
        read_resume_point,
        save_checkpoint,
        save_run_checkpoint,
        settle_pending,
    )

    save_run_checkpoint(tmp_path, *_run_pair(tmp_path, 1))
    assert not (tmp_path / PENDING_LAST).exists()
    header, model, loss, state = _run_pair(tmp_path, 2)
    # Crash before the commit: a pending last of step 2, the state still at step 1.
    save_checkpoint(tmp_path / PENDING_LAST, model, header, loss=loss)
    assert settle_pending(tmp_path).startswith("dropped")
    assert read_resume_point(tmp_path).state.step == 1 and not (tmp_path / PENDING_LAST).exists()
    # Crash after the commit: the state is at step 2, last still at step 1.
    save_checkpoint(tmp_path / PENDING_LAST, model, header, loss=loss)
    torch.save(
        {name: getattr(state, name) for name in state.__dataclass_fields__}, tmp_path / STATE_FILE
    )
    with pytest.raises(CheckpointError, match=r"epoch 1, step 1 but train_state\.pt at epoch 2"):
        read_resume_point(tmp_path)
    assert settle_pending(tmp_path).startswith("completed")
    assert read_resume_point(tmp_path).state.step == 2
    assert read_metadata(tmp_path / "last.safetensors")["step"] == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "not readable"), (pickle.dumps({"epoch": 1}), "not readable"), (b"\x80\x04K", "not")],
)
def test_a_bad_train_state_is_one_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    from dml_core.engine.checkpoint import STATE_FILE, read_resume_point, save_run_checkpoint

    save_run_checkpoint(tmp_path, *_run_pair(tmp_path, 1))
    (tmp_path / STATE_FILE).write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        read_resume_point(tmp_path)
    assert "weights_only" not in str(error.value) and STATE_FILE in str(error.value)
    torch.save({"epoch": 1, "step": "x"}, tmp_path / STATE_FILE)
    with pytest.raises(ValueError, match="fields missing"):
        read_resume_point(tmp_path)


def _rewrite_header(path: Path, change) -> None:
    import struct

    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    change(header)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + size :])


def _document_change(**changes):
    def change(header: dict) -> None:
        document = json.loads(header["__metadata__"]["dml_explorer"])
        document.update(changes)
        header["__metadata__"]["dml_explorer"] = json.dumps(document)

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_document_change(model={"arch": "mlp", "embed_dim": 10**9}), "embed_dim 1000000000"),
        (_document_change(model={"arch": "mlp", "embed_dim": True}), "embed_dim True"),
        (_document_change(model="mlp"), "no model architecture"),
        (_document_change(epoch=-1), "epoch -1"),
        (_document_change(history={"a": 1}), "history that is not"),
        (_document_change(dataset={"classes": {"test": [1, 2]}}), "classes"),
        (lambda h: h.update({"__metadata__": {"dml_explorer": "[" * 50_000}}), "unreadable"),
        (lambda h: h.update({"__metadata__": []}), "__metadata__"),
        (lambda h: h["model.head.weight"].update(data_offsets=[9, 3]), "malformed entry"),
        (lambda h: h["model.head.weight"].update(shape="2x2"), "malformed entry"),
        (lambda h: h.update({"x": 5}), "malformed entry"),
    ],
)
def test_crafted_headers_are_refused_before_anything_is_built(
    checkpoint: Path, change, message: str
) -> None:
    _rewrite_header(checkpoint, change)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(checkpoint)


def test_trailing_bytes_are_refused(checkpoint: Path) -> None:
    checkpoint.write_bytes(checkpoint.read_bytes() + b"\0" * 8)
    with pytest.raises(CheckpointError, match="8 bytes after its tensor data"):
        read_metadata(checkpoint)
