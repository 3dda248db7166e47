"""Hostile files, round 2 (issue 27, docs/DESIGN.md §9): numpy headers that claim more than the
file holds, stored evaluations that do not fit their schema, temporary files a killed ``project``
or ``import`` left, and exports that run at the same time.

Command lines run in processes forked from one that imported the CLI once (``forked_cli.py``).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from cli_support import assert_one_line, forked_cli
from numpy.lib import format as npy_format

from dml_core.io.arrays import (
    DEFAULT_MAX_ARRAY_BYTES,
    MAX_ARRAY_BYTES_VARIABLE,
    ArrayFileError,
    check_npy,
    check_npz,
)

pytestmark = pytest.mark.slow

HUGE_SHAPE = (1 << 20, 1 << 16)
"""float32: 256 GiB (268 GB) claimed by a header of a few hundred bytes."""


def _npy_claiming(shape: tuple[int, ...], data: bytes = b"\0" * 64) -> bytes:
    """A ``.npy`` whose header claims ``shape`` (float32) followed by ``data`` alone."""
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(
        buffer, {"descr": "<f4", "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue() + data


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def huge_npz(path: Path, shape: tuple[int, ...] = HUGE_SHAPE) -> Path:
    """A 300-byte ``.npz``: ``embeddings.npy`` claims ``shape``, ``labels.npy`` is real."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("embeddings.npy", _npy_claiming(shape))
        archive.writestr("labels.npy", _npy(np.arange(4) % 2))
    return path


# --- 1. a header that claims 256 GiB -------------------------------------------------------------


def test_a_npz_claiming_256_gib_is_refused_from_its_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dml_core.interop import read_embeddings
    from dml_core.interop.numpy_files import npz_problem

    npz = huge_npz(tmp_path / "huge.npz")
    npy = tmp_path / "huge.npy"
    npy.write_bytes(_npy_claiming(HUGE_SHAPE))
    np.save(tmp_path / "huge.labels.npy", np.arange(4) % 2)
    assert npz.stat().st_size < 1024 and npy.stat().st_size < 1024
    for path in (npz, npy):
        with pytest.raises(ArrayFileError) as error:
            read_embeddings(path)
        message = str(error.value)
        assert message.startswith(str(path)) and "\n" not in message
        assert "(1048576, 65536)" in message and "256 GiB" in message
        assert MAX_ARRAY_BYTES_VARIABLE in message
    assert "256 GiB" in npz_problem(npz)
    # Raising the limit does not let it through: the file holds 64 bytes, not 256 GiB.
    monkeypatch.setenv(MAX_ARRAY_BYTES_VARIABLE, str(1 << 40))
    with pytest.raises(ArrayFileError, match="only 64 bytes follow its header"):
        read_embeddings(npz)
    with pytest.raises(ArrayFileError, match="only 64 bytes follow its header"):
        check_npy(npy)
    monkeypatch.setenv(MAX_ARRAY_BYTES_VARIABLE, "lots")
    with pytest.raises(ArrayFileError, match="must be a positive integer"):
        check_npz(npz)
    monkeypatch.delenv(MAX_ARRAY_BYTES_VARIABLE)
    # The limit is exact: an array of exactly the limit passes, one item more does not.
    exact = tmp_path / "exact.npz"
    with zipfile.ZipFile(exact, "w") as archive:
        archive.writestr("embeddings.npy", _npy(np.ones((4, 4), np.float32)))
        archive.writestr("notes.txt", b"x" * 100)
    monkeypatch.setenv(MAX_ARRAY_BYTES_VARIABLE, "100")
    assert check_npz(exact)["embeddings"].nbytes == 64 and check_npz(exact)["notes.txt"] is None
    monkeypatch.setenv(MAX_ARRAY_BYTES_VARIABLE, "64")
    with pytest.raises(ArrayFileError, match=r"member 'notes\.txt' is 100 bytes"):
        check_npz(exact)
    assert DEFAULT_MAX_ARRAY_BYTES == 4 * 1024**3


CLAIM_UNDER_A_SMALL_ADDRESS_SPACE = """
import resource, sys
import numpy as np
from dml_core.interop import read_embeddings
from dml_core.io.arrays import ArrayFileError
with open("/proc/self/status") as status:
    size = next(int(line.split()[1]) for line in status if line.startswith("VmSize"))
room = (size + 512 * 1024) * 1024  # 512 MiB more than the process maps now
resource.setrlimit(resource.RLIMIT_AS, (room, room))
try:
    np.load(sys.argv[1], allow_pickle=False)["embeddings"]
    print("numpy: loaded")
except MemoryError:
    print("numpy: MemoryError")
try:
    read_embeddings(sys.argv[1])
except ArrayFileError as error:
    print("ours:", str(error).split(": ", 1)[1])
"""


def test_the_header_is_refused_before_numpy_allocates(tmp_path: Path) -> None:
    """Under an address-space limit 512 MiB above what the process maps, a header claiming 2 GiB
    (inside the 4 GiB default limit, so only the file's own size refuses it) makes ``np.load``
    fail to allocate; ``read_embeddings`` refuses it from the header, having allocated nothing."""
    npz = huge_npz(tmp_path / "two-gib.npz", shape=(1 << 19, 1 << 10))
    script = tmp_path / "limited.py"
    script.write_text(CLAIM_UNDER_A_SMALL_ADDRESS_SPACE)
    ran = subprocess.run(
        [sys.executable, str(script), str(npz)], capture_output=True, text=True, timeout=300
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    numpy, ours = ran.stdout.splitlines()
    assert numpy == "numpy: MemoryError"
    assert ours == (
        "ours: array 'embeddings' of shape (524288, 1024) and dtype float32 is 2 GiB but only "
        "64 bytes follow its header (truncated or crafted)"
    )


def test_evaluate_export_and_project_refuse_a_huge_header_in_one_line(tmp_path: Path) -> None:
    npz = huge_npz(tmp_path / "huge.npz")
    out = tmp_path / "exported"
    commands = [
        ["evaluate", "--embeddings", str(npz)],
        ["export", str(npz), "--format", "tensorboard", "--out", str(out)],
        ["project", str(npz), "--device", "cpu"],
    ]
    results = forked_cli([{"args": args, "cwd": str(tmp_path)} for args in commands])
    assert_one_line(results[0], str(npz), "256 GiB", MAX_ARRAY_BYTES_VARIABLE)
    assert_one_line(results[1], str(npz), "256 GiB", MAX_ARRAY_BYTES_VARIABLE)
    assert_one_line(results[2], str(npz), "256 GiB", MAX_ARRAY_BYTES_VARIABLE)  # a file's sidecar
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.npz"]


# --- 2. stored evaluations outside their schema ------------------------------------------------------


def toy_checkpoint(path: Path, seed: int = 0) -> Path:
    """A real (untrained) toy checkpoint with a full run header."""
    import torch

    from dml_core.config import TrainConfig
    from dml_core.engine.checkpoint import save_checkpoint
    from dml_core.models import build_model
    from dml_core.presets import preset

    torch.manual_seed(seed)
    config = TrainConfig.from_dict({**preset("toy"), "device": "cpu"})
    model = build_model("mlp", 2, pretrained=None, frozen_bn=False, normalize=True, in_channels=3)
    metadata = {"kind": "last", "config": config.to_dict(), "model": model.config(), "history": []}
    return save_checkpoint(path, model, metadata)


def bad_sections(folder: Path) -> dict[str, tuple[Path, str]]:
    """Checkpoints whose stored evaluation is one class, one item, two items, repeated item ids or
    an item id of 10¹⁵, each with the words ``read_evaluation`` refuses it with."""
    from dataclasses import replace

    from dml_core.engine.stored_evaluation import evaluate_and_store, write_evaluation

    folder.mkdir(parents=True, exist_ok=True)
    good = toy_checkpoint(folder / "good.safetensors")
    stored = evaluate_and_store(good, device="cpu", umap=None)
    first_two = [0, int(np.flatnonzero(stored.labels != stored.labels[0])[0])]

    def rows(keep: list[int]):
        return replace(
            stored,
            embeddings=stored.embeddings[keep],
            labels=stored.labels[keep],
            item_ids=stored.item_ids[keep],
            pca=stored.pca[keep],
        )

    ids_repeat, id_huge = stored.item_ids.copy(), stored.item_ids.copy()
    ids_repeat[1] = ids_repeat[0]
    id_huge[3] = 10**15
    sections = {
        "one-class": (replace(stored, labels=np.zeros_like(stored.labels)), "in 1 class(es)"),
        "one-item": (rows([0]), "has 1 item(s) in 1 class(es)"),
        "two-items": (rows(first_two), "has 2 item(s) in 2 class(es)"),
        "repeated-ids": (replace(stored, item_ids=ids_repeat), "item_ids that repeat"),
        "huge-id": (replace(stored, item_ids=id_huge), "item_ids up to 1000000000000000"),
    }
    made = {"good": (good, "")}
    for name, (section, words) in sections.items():
        path = toy_checkpoint(folder / f"{name}.safetensors")
        write_evaluation(path, section)
        made[name] = (path, words)
    return made


def test_a_stored_evaluation_outside_its_schema_is_one_line_naming_the_file(
    tmp_path: Path,
) -> None:
    from dml_core.engine.stored_evaluation import open_evaluation
    from dml_core.engine.stored_section import StoredEvaluationError, read_evaluation

    made = bad_sections(tmp_path)
    assert len(read_evaluation(made["good"][0])) > 10
    for name, (path, words) in made.items():
        if name == "good":
            continue
        with pytest.raises(StoredEvaluationError) as error:
            read_evaluation(path)
        message = str(error.value)
        assert (
            message.startswith(f"{path}: the stored evaluation section has ") and words in message
        )
        assert "\n" not in message
        # What a reader does then: computes the evaluation from the dataset, saying why.
        computed, note = open_evaluation(path, device="cpu")
        assert note is not None and note.startswith(message)
        assert len(computed) == len(read_evaluation(made["good"][0]))


# --- 3. temporary files a killed project or import left -----------------------------------------


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _live_pid() -> subprocess.Popen:
    """A process that runs until the test ends (its pid marks a live writer's file)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])


def test_project_and_import_remove_what_a_killed_run_left_and_nothing_live(
    tmp_path: Path,
) -> None:
    import torch

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    checkpoint = toy_checkpoint(folder / "model.safetensors")
    state = tmp_path / "state.pth"
    from dml_core.models import build_model

    model = build_model("mlp", 2, pretrained=None, frozen_bn=False, normalize=True, in_channels=3)
    torch.save(model.state_dict(), state)
    imported = folder / "imported.safetensors"
    project = ["project", str(checkpoint), "--device", "cpu", "--no-umap"]
    import_ = ["import", str(state), "--out", str(imported), "--arch", "mlp"]
    kills = [(project, checkpoint.name), (import_, imported.name)]
    killed = forked_cli(
        [
            {
                "args": args,
                "cwd": str(tmp_path),
                "env": {"DML_EXPLORER_FAULT": f"tmp_written@{name}:1"},
            }
            for args, name in kills
        ]
    )
    assert [result["returncode"] for result in killed] == [-9, -9]
    left = _temps(folder)  # one temporary file each, named with its dead writer's pid
    assert len(left) == 2 and all(name.endswith(".tmp") for name in left), left
    assert not [name for name in left if name.startswith(".tmp")]  # safetensors made none
    live = _live_pid()
    try:
        (folder / f".model.safetensors.{live.pid}.abcd1234.tmp").write_bytes(b"live writer")
        (folder / ".tmpAb3xY9").write_bytes(b"safetensors' own, from an older version")
        (folder / ".other.safetensors.1.abcd1234.tmp").write_bytes(b"another target's")
        again = forked_cli([{"args": project, "cwd": str(tmp_path)}])[0]
        assert again["returncode"] == 0, again
        assert _temps(folder) == sorted(
            [
                f".model.safetensors.{live.pid}.abcd1234.tmp",
                ".other.safetensors.1.abcd1234.tmp",
                next(name for name in left if name.startswith(".imported")),
            ]
        )
        again = forked_cli([{"args": import_, "cwd": str(tmp_path)}])[0]
        assert again["returncode"] == 0, again
        assert imported.is_file()
        assert _temps(folder) == sorted(
            [f".model.safetensors.{live.pid}.abcd1234.tmp", ".other.safetensors.1.abcd1234.tmp"]
        )
    finally:
        live.kill()
        live.wait()


HOLD_THE_RUN_LOCK = """
import sys, time
from dml_core.io import FolderLock
lock = FolderLock(sys.argv[1]).acquire()  # held while the process lives
print("held", flush=True)
time.sleep(600)
"""


def test_project_in_a_run_folder_in_use_leaves_the_trainers_files(tmp_path: Path) -> None:
    """Files without a pid (safetensors' ``.tmpXXXXXX``, names from before pids were recorded) may
    be a running trainer's: in a folder whose run lock a live process holds they stay."""
    from dml_core.engine.stored_evaluation import evaluate_and_store

    run = tmp_path / "run"
    run.mkdir()
    checkpoint = toy_checkpoint(run / "best.safetensors")
    theirs = [".tmpAb3xY9", ".best.safetensors.abcd1234.tmp"]
    for name in theirs:
        (run / name).write_bytes(b"the trainer's")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_RUN_LOCK, str(run)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        evaluate_and_store(checkpoint, device="cpu", umap=None)
        assert all((run / name).exists() for name in theirs)
    finally:
        holder.kill()
        holder.wait()
    evaluate_and_store(checkpoint, device="cpu", umap=None)  # the lock is free: they go
    assert not any((run / name).exists() for name in theirs)


# --- 4. two exports into one folder at once ---------------------------------------------------


def _export_set(folder: Path, name: str, items: int) -> Path:
    rng = np.random.default_rng(items)
    path = folder / f"{name}.npz"
    labels = np.arange(items) % 8
    np.savez(path, embeddings=rng.normal(size=(items, 4)).astype("float32"), labels=labels)
    return path


def _rows(folder: Path) -> tuple[int, int]:
    tensors = (folder / "tensors.tsv").read_text().splitlines()
    return len(tensors), len((folder / "metadata.tsv").read_text().splitlines()) - 1


def test_an_export_leaves_a_running_exports_staging_folder_alone(tmp_path: Path) -> None:
    """Issue 27: an export removed every staging folder beside its target, so a second export
    started meanwhile removed the first one's live folder ('cannot write …/tensors.tsv'). Now a
    staging folder carries its writer's pid: the first export is stopped (SIGSTOP, at the real
    write point) with its folder live, a second one runs to the end, the first resumes and ends
    well too; a killed export's folder is removed by the next one."""
    import signal

    small, large = _export_set(tmp_path, "small", 160), _export_set(tmp_path, "large", 300)
    out = tmp_path / "projector"
    export = ["-m", "dml_core", "export", "--format", "tensorboard", "--out", str(out)]
    environment = {**os.environ, "DML_EXPLORER_FAULT": "tmp_written@tensors.tsv:1:STOP"}
    first = subprocess.Popen(
        [sys.executable, *export[:3], str(large), *export[3:]],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        os.waitpid(first.pid, os.WUNTRACED)  # returns once it stopped itself, mid-write
        live = list(tmp_path.glob(".projector.*.staging"))
        assert [folder.name.split(".")[2] for folder in live] == [str(first.pid)]
        [second] = forked_cli([{"args": ["export", str(small), *export[3:]], "cwd": str(tmp_path)}])
        assert second["returncode"] == 0, second
        assert _rows(out) == (160, 160) and live[0].is_dir()
    finally:
        first.send_signal(signal.SIGCONT)
        _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert _rows(out) == (300, 300)
    assert not list(tmp_path.glob(".projector.*"))
    # A killed export's folder names a dead pid: the next export removes it.
    again = {"args": ["export", str(small), *export[3:]], "cwd": str(tmp_path)}
    killed = {**again, "env": {"DML_EXPLORER_FAULT": "tmp_written@metadata.tsv:1"}}
    results = forked_cli([killed, again], parallel=1)  # in this order
    assert [result["returncode"] for result in results] == [-9, 0]
    assert not list(tmp_path.glob(".projector.*")) and _rows(out) == (160, 160)
