"""Hostile inputs (issue 27, docs/DESIGN.md §9): files and configs a user or an attacker may hand
over must end in one line on stderr naming the file or option, a non-zero exit, no traceback and
nothing half-written — never an aborted process, unbounded work, a blocked reader or a mixed folder.

Command lines run in processes forked from one that imported the CLI once (``forked_cli.py``), so a
process that aborts (faiss' SIGABRT) shows up as a negative exit status here, not as a dead pytest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import assert_one_line, forked_cli

from dml_core.engine.checkpoint_header import read_metadata
from dml_core.engine.events import read_events
from dml_core.metrics._inputs import MAX_EMBEDDING_NORM, EmbeddingRangeError, check_embeddings

pytestmark = pytest.mark.slow


def _slow_largest_norm(points: np.ndarray) -> float:
    """Largest row norm by an explicit loop over rows and coordinates, in Python floats."""
    largest = 0.0
    for row in points.tolist():
        largest = max(largest, sum(value * value for value in row) ** 0.5)
    return largest


# --- 1. huge embeddings never reach faiss ------------------------------------------------------


@pytest.mark.parametrize("kind", ["numpy32", "numpy64", "torch"])
def test_embeddings_beyond_the_norm_bound_are_refused(kind: str) -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(30, 8))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    inside = points * MAX_EMBEDDING_NORM * 0.99
    outside = inside.copy()
    outside[7] *= 1.05 / 0.99  # one row just beyond the bound
    assert _slow_largest_norm(inside) <= MAX_EMBEDDING_NORM < _slow_largest_norm(outside)

    def as_kind(array: np.ndarray):
        if kind == "torch":
            return torch.from_numpy(array.astype(np.float32))
        return array.astype(np.float32 if kind == "numpy32" else np.float64)

    check_embeddings(as_kind(inside))
    with pytest.raises(EmbeddingRangeError, match="row 7 has norm"):
        check_embeddings(as_kind(outside))
    # Finite in float64, infinite once cast to float32 as faiss would.
    if kind == "numpy64":
        with pytest.raises(EmbeddingRangeError):
            check_embeddings(np.full((4, 3), 1e300))


def test_huge_embedding_files_and_a_diverging_run_end_in_one_line(tmp_path: Path) -> None:
    """Issue 27 item 1: ``evaluate``/``export`` of finite but huge embeddings aborted the process
    in faiss' k-means (exit 134); a run whose embeddings diverged died the same way at its epoch-5
    evaluation, with no ``error`` event. Now: one line, exit 2, and the run's event log ends in an
    ``error`` event while its checkpoint from before the divergence stays loadable."""
    rng = np.random.default_rng(0)
    big = tmp_path / "big.npz"
    np.savez(
        big,
        embeddings=(rng.normal(size=(20, 8)) * 1e20).astype("float32"),
        labels=np.repeat(np.arange(4), 5),
    )
    run = tmp_path / "diverged"
    diverge = ["train", "--preset", "toy", "--epochs", "8", "--eval-every", "1"]
    diverge += ["--optimizer", "sgd", "--momentum", "0.9", "--lr", "30", "--no-normalize"]
    cases = [
        ["evaluate", "--embeddings", str(big)],
        ["export", str(big), "--format", "tensorboard", "--out", str(tmp_path / "exported")],
        [*diverge, "--no-progress", "--out", str(run)],
    ]
    env = {"DML_EXPLORER_CACHE": str(tmp_path / "cache")}
    results = forked_cli([{"args": a, "cwd": str(tmp_path), "env": env} for a in cases])
    assert_one_line(results[0], "too large")
    assert_one_line(results[1], "too large")
    assert not (tmp_path / "exported").exists() or not any((tmp_path / "exported").iterdir())
    assert_one_line(results[2], "diverged", "last good checkpoint")
    events, _ = read_events(run / "events.jsonl")
    assert events[-1]["kind"] == "error" and "diverged" in events[-1]["message"]
    evaluated = [e["epoch"] for e in events if e["kind"] == "eval"]
    assert evaluated and evaluated == list(range(1, len(evaluated) + 1))
    header = read_metadata(run / "best.safetensors")
    assert 1 <= header["epoch"] <= evaluated[-1]  # a checkpoint from before the divergence
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


# --- 2. work without bound ----------------------------------------------------------------------


def _checkpoint(path: Path, **config_changes) -> Path:
    """A real (untrained) checkpoint: the toy's MLP with a full run header whose config is the
    glyphs preset with ``config_changes`` (an empty dict or None for ``config`` drops it)."""
    from dml_core.config import TrainConfig
    from dml_core.engine.checkpoint import save_checkpoint
    from dml_core.models import build_model
    from dml_core.presets import preset

    config = TrainConfig.from_dict(preset("glyphs")).to_dict()
    config.update(config_changes)
    model = build_model("mlp", 2, pretrained=None, frozen_bn=False, normalize=True, in_channels=3)
    metadata = {"kind": "last", "config": config, "model": model.config(), "history": []}
    if "config" in config_changes:
        metadata["config"] = config_changes["config"]
    return save_checkpoint(path, model, metadata)


def test_a_glyphs_config_beyond_the_pixel_bound_is_refused_before_allocating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 27 item 3: 2,000,000 classes × 1,000 samples ran for minutes (a 477 GiB MemoryError
    in the app). Now the spec is refused with the bound and the variable that raises it."""
    from dml_core.data.glyphs import DEFAULT_MAX_PIXELS, MAX_PIXELS_VARIABLE, GlyphSpec

    huge = {"num_classes": 2_000_000, "samples_per_class": 1000}
    path = _checkpoint(tmp_path / "huge.safetensors", dataset_options=huge)
    commands = [
        ["evaluate", "--checkpoint", str(path), "--device", "cpu"],
        ["project", str(path), "--device", "cpu"],
        ["export", str(path), "--format", "csv", "--out", str(tmp_path / "out"), "--device", "cpu"],
    ]
    env = {"DML_EXPLORER_CACHE": str(tmp_path / "cache")}
    for result in forked_cli([{"args": a, "cwd": str(tmp_path), "env": env} for a in commands]):
        assert_one_line(result, "glyphs set too large", MAX_PIXELS_VARIABLE)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.npz"))
    assert not (tmp_path / "out").exists()
    # The bound is exactly C·S·size² ≤ limit, and the variable moves it.
    side = 64
    at_limit = DEFAULT_MAX_PIXELS // (side * side)
    GlyphSpec(num_classes=at_limit // 4, samples_per_class=4, image_size=side)
    with pytest.raises(ValueError, match=MAX_PIXELS_VARIABLE):
        GlyphSpec(num_classes=at_limit // 4 + 1, samples_per_class=4, image_size=side)
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, str(DEFAULT_MAX_PIXELS * 2))
    GlyphSpec(num_classes=at_limit // 4 + 1, samples_per_class=4, image_size=side)
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "lots")
    with pytest.raises(ValueError, match="must be a positive integer"):
        GlyphSpec()


def test_a_fifo_named_like_a_run_file_blocks_no_reader(tmp_path: Path) -> None:
    """Issue 27 item 3: a FIFO named ``events.jsonl`` blocked ``report`` and the Train page
    forever. Readers open only regular files; the FIFO's run is reported as not read."""
    runs = tmp_path / "runs"
    for name in ("good", "fifo"):
        (runs / name).mkdir(parents=True)
        (runs / name / "config.json").write_text(json.dumps({"dataset": "toy", "seed": 0}))
    event = {"t": 0.0, "kind": "eval", "epoch": 1, "step": 1, "metrics": {"test/recall@1": 0.5}}
    (runs / "good" / "events.jsonl").write_text(json.dumps(event) + "\n")
    for name in ("events.jsonl", "app.pid", "output.log"):
        os.mkfifo(runs / "fifo" / name)
    script = (
        "import sys; from pathlib import Path\n"
        "from app.runs import RunState, refresh, read_pid, launch_error, discover_runs\n"
        "run = Path(sys.argv[1]) / 'fifo'\n"
        "state = refresh(RunState(run))\n"
        "print(len(state.events), read_pid(run), state.skipped, launch_error(run))\n"
        "print(len(discover_runs(Path(sys.argv[1]))))\n"
    )
    page = subprocess.run(
        [sys.executable, "-c", script, str(runs)], capture_output=True, text=True, timeout=300
    )
    assert page.returncode == 0, page.stderr[-2000:]
    first, second = page.stdout.splitlines()
    assert first.startswith("0 None [") and "not a regular file" in first
    assert second == "2"
    [result] = forked_cli(
        [{"args": ["report", str(runs), "--out", str(tmp_path / "report")], "cwd": str(tmp_path)}]
    )
    assert result["returncode"] == 0, result
    assert "not a regular file" in result["stderr"] and "Traceback" not in result["stderr"]


# --- 3. an export folder holds one export --------------------------------------------------------


def _export_set(tmp_path: Path, name: str, items: int) -> Path:
    rng = np.random.default_rng(items)
    path = tmp_path / f"{name}.npz"
    labels = np.arange(items) % 8
    np.savez(path, embeddings=rng.normal(size=(items, 4)).astype("float32"), labels=labels)
    return path


def _projector_rows(folder: Path) -> tuple[int, int]:
    """(rows of tensors.tsv, item rows of metadata.tsv) counted line by line."""
    tensors = (folder / "tensors.tsv").read_text().splitlines()
    metadata = (folder / "metadata.tsv").read_text().splitlines()
    return len(tensors), len(metadata) - 1


def test_an_export_killed_mid_write_leaves_the_previous_export_whole(tmp_path: Path) -> None:
    """Issue 27 item 4: a 3,000-item export killed mid-write over a 160-item one left
    ``tensors.tsv`` at 3,000 rows beside ``metadata.tsv`` at 160. Now the set is staged and
    swapped in whole: a kill at any file leaves the previous set, and the next export cleans up."""
    small, large = _export_set(tmp_path, "small", 160), _export_set(tmp_path, "large", 3000)
    out = tmp_path / "projector"
    tensorboard = ["--format", "tensorboard", "--out", str(out)]
    [first] = forked_cli([{"args": ["export", str(small), *tensorboard], "cwd": str(tmp_path)}])
    assert first["returncode"] == 0, first
    assert _projector_rows(out) == (160, 160)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    kills = [f"renamed@{name}:1" for name in ("tensors.tsv", "metadata.tsv")]
    kills.append("tmp_written@projector_config.pbtxt:1")
    cases = [
        {
            "args": ["export", str(large), *tensorboard],
            "cwd": str(tmp_path),
            "env": {"DML_EXPLORER_FAULT": kill},
        }
        for kill in kills
    ]
    # One after the other: an export removes the staging folders it finds beside its target,
    # so a second export started meanwhile would remove the first one's live staging folder.
    for result in forked_cli(cases, parallel=1):
        assert result["returncode"] == -9, result  # killed, as intended
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert list(tmp_path.glob(".projector.*.staging"))  # what the kills left
    [again] = forked_cli([{"args": ["export", str(large), *tensorboard], "cwd": str(tmp_path)}])
    assert again["returncode"] == 0, again
    assert _projector_rows(out) == (3000, 3000)
    assert not list(tmp_path.glob(".projector.*"))


def test_an_export_never_replaces_a_folder_holding_other_files(tmp_path: Path) -> None:
    source = _export_set(tmp_path, "small", 40)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("months of work")
    args = ["export", str(source), "--format", "csv", "--out", str(mine)]
    [result] = forked_cli([{"args": args, "cwd": str(tmp_path)}])
    assert_one_line(result, str(mine), "thesis.tex")
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    assert not list(tmp_path.glob(".mine.*"))


# --- 4. project racing a rewrite ----------------------------------------------------------------


def _toy_checkpoint(path: Path, seed: int) -> Path:
    """A real (untrained) toy checkpoint whose weights depend on ``seed``."""
    from dml_core.config import TrainConfig
    from dml_core.engine.checkpoint import save_checkpoint
    from dml_core.models import build_model
    from dml_core.presets import preset

    torch.manual_seed(seed)
    config = TrainConfig.from_dict({**preset("toy"), "device": "cpu"})
    model = build_model("mlp", 2, pretrained=None, frozen_bn=False, normalize=True, in_channels=3)
    metadata = {"kind": "last", "config": config.to_dict(), "model": model.config(), "history": []}
    return save_checkpoint(path, model, metadata)


def test_project_never_stores_one_files_evaluation_beside_anothers_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 27 item 5: a checkpoint rewritten while ``project`` embedded it got the old weights'
    evaluation (stored recall@1 0.396, actual 0.146). The rewrite happens here at the real point
    (``DML_EXPLORER_FAULT=embedded:1:USR1`` and a handler that replaces the file): the commit sees
    another file, evaluates again, and what it stores is the new weights' own evaluation."""
    import shutil
    import signal

    from dml_core.engine.stored_evaluation import (
        CheckpointChangedError,
        checkpoint_fingerprint,
        evaluate_and_store,
        write_evaluation,
    )
    from dml_core.engine.stored_section import read_evaluation

    path = _toy_checkpoint(tmp_path / "raced.safetensors", seed=1)
    old = _toy_checkpoint(tmp_path / "old.safetensors", seed=1)
    new = _toy_checkpoint(tmp_path / "new.safetensors", seed=2)
    old_alone = evaluate_and_store(old, device="cpu", umap=None)
    new_alone = evaluate_and_store(new, device="cpu", umap=None)
    assert old_alone.metrics != new_alone.metrics  # the race would be visible

    def rewrite(*_: object) -> None:
        shutil.copyfile(tmp_path / "new.safetensors", tmp_path / "incoming")
        os.replace(tmp_path / "incoming", path)

    previous = signal.signal(signal.SIGUSR1, rewrite)
    try:
        monkeypatch.setenv("DML_EXPLORER_FAULT", "embedded:1:USR1")
        stored = evaluate_and_store(path, device="cpu", umap=None)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        monkeypatch.delenv("DML_EXPLORER_FAULT")
    assert stored.metrics == new_alone.metrics
    assert read_evaluation(path).metrics == new_alone.metrics
    assert np.array_equal(read_evaluation(path).embeddings, new_alone.embeddings)

    # A commit against a fingerprint taken before a rewrite is refused and writes nothing.
    before = checkpoint_fingerprint(path)
    rewrite()
    rewritten = path.read_bytes()
    with pytest.raises(CheckpointChangedError, match="rewritten while its evaluation"):
        write_evaluation(path, old_alone, expected=before)
    assert path.read_bytes() == rewritten
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# --- 5. temporary-file litter ---------------------------------------------------------------------


def _toy_trainer(out: Path):
    from dml_core.config import TrainConfig
    from dml_core.engine.trainer import Trainer
    from dml_core.presets import preset

    config = TrainConfig.from_dict({**preset("toy"), "epochs": 1, "device": "cpu"})
    return Trainer(config, out, progress=False)


def test_a_run_removes_its_own_temporary_files_and_nothing_else(tmp_path: Path) -> None:
    """Issue 27 item 6: a fresh run kept a leftover ``.config.json.*.tmp``; safetensors' own
    ``.tmpXXXXXX`` files survived kill -9 and resume. Only those patterns go."""
    out = tmp_path / "run"
    (out / "snapshots").mkdir(parents=True)
    ours = [".config.json.k2j3h4.tmp", ".tmpAb3xY9", "snapshots/.epoch_001.npz.x1y2.tmp"]
    others = ["notes.tmp", ".tmpshort", ".tmpToolong1", "tmpAb3xY9", ".hidden"]
    for name in ours + others:
        (out / name).write_bytes(b"x")
    _toy_trainer(out).close()
    assert not [name for name in ours if (out / name).exists()]
    assert [name for name in others if (out / name).exists()] == others


def test_a_state_write_that_fails_leaves_no_pending_last(tmp_path: Path) -> None:
    """Issue 27 item 6: after ENOSPC the pending ``.last.safetensors.next`` stayed until resume.
    The state write is made to fail for real (its target is a folder): not committed, so the
    pending file goes and the run's previous files stay as they were."""
    from dml_core.engine.checkpoint import PENDING_LAST, STATE_FILE
    from dml_core.io import WriteError

    out = tmp_path / "run"
    trainer = _toy_trainer(out)
    (out / STATE_FILE).mkdir()
    with pytest.raises(WriteError, match=STATE_FILE):
        trainer.run()
    assert not (out / PENDING_LAST).exists()
    assert not (out / "last.safetensors").exists()
    assert not [p.name for p in out.rglob("*") if p.name.endswith(".tmp")]


# --- 6. contract nits: every option checked before the folder, every file message names it -----


def _bad_embedding_files(folder: Path) -> dict[str, Path]:
    """Files that once gave EOFError, BadZipFile, KeyError or numpy's allow_pickle advice."""
    folder.mkdir()
    files = {name: folder / name for name in ("empty.npz", "empty.npy", "labels.npy")}
    files["empty.npz"].write_bytes(b"")
    files["empty.npy"].write_bytes(b"")
    np.save(files["labels.npy"], np.arange(4) % 2)
    files["garbage.npz"] = folder / "garbage.npz"
    files["garbage.npz"].write_bytes(np.random.default_rng(0).bytes(300))
    files["zip-header.npz"] = folder / "zip-header.npz"
    files["zip-header.npz"].write_bytes(b"PK\x03\x04 but no archive follows")
    files["duplicate.csv"] = folder / "duplicate.csv"
    files["duplicate.csv"].write_text("label,e0,e0\n0,0.1,0.2\n1,0.3,0.4\n0,0.5,0.6\n1,0.7,0.8\n")
    files["big.npz"] = folder / "big.npz"
    rng = np.random.default_rng(1)
    embeddings = (rng.normal(size=(20, 8)) * 1e20).astype("float32")
    np.savez(files["big.npz"], embeddings=embeddings, labels=np.repeat(np.arange(4), 5))
    return files


def test_file_messages_name_the_file_and_never_advise_pickles(tmp_path: Path) -> None:
    from dml_core.interop import read_embeddings

    files = _bad_embedding_files(tmp_path / "files")
    expected = {
        "empty.npz": "not a .npz archive (empty)",
        "empty.npy": "not a readable .npy file (empty)",
        "garbage.npz": "not a .npz archive",
        "zip-header.npz": "not a .npz archive",
        "duplicate.csv": "column names must be distinct",
        "big.npz": "too large",
    }
    for name, fragment in expected.items():
        labels = files["labels.npy"] if name.endswith(".npy") else None
        with pytest.raises(ValueError) as error:
            read_embeddings(files[name], labels)
        message = str(error.value)
        assert message.startswith(str(files[name])) and fragment in message, message
        assert (
            "\n" not in message and "allow_pickle" not in message and "pickle.load" not in message
        )
        if name == "big.npz":
            assert isinstance(error.value, EmbeddingRangeError)
    cases = [
        ["evaluate", "--embeddings", str(files[name])] for name in expected if name != "empty.npy"
    ]
    cases.append(["evaluate", "--embeddings", str(files["empty.npy"])])
    cases[-1] += ["--labels", str(files["labels.npy"])]
    cases.append(["export", str(files["big.npz"]), "--format", "csv", "--out", str(tmp_path / "x")])
    results = forked_cli([{"args": a, "cwd": str(tmp_path)} for a in cases])
    for args, result in zip(cases, results, strict=True):
        assert_one_line(result, args[2] if args[0] == "evaluate" else args[1])
    assert not (tmp_path / "x").exists()


def test_options_are_checked_before_the_run_folder_exists(tmp_path: Path) -> None:
    """Issue 27 item 7: ``--max-steps-per-epoch -1`` wrote ``config.json`` and then failed, so the
    corrected command was refused ("already holds a run"); a huge ``--seed`` said "Overflow when
    unpacking long long". Now every option is checked first, and the corrected command runs."""
    train = ["train", "--preset", "toy", "--epochs", "1", "--no-progress", "--device", "cpu"]
    bad = {
        "max_steps_per_epoch": ["--max-steps-per-epoch", "-1"],
        "seed": ["--seed", str(10**30)],
        "eval_batch_size": ["--eval-batch-size", "0"],
        "momentum": ["--momentum", "-1"],
        "lr": ["--lr", "inf"],
        "lr_gamma": ["--lr-gamma", "nan"],
        "early_stop_min_delta": ["--early-stop-min-delta", "nan"],
    }
    cases = [
        {"args": [*train, *flags, "--out", str(tmp_path / name)], "cwd": str(tmp_path)}
        for name, flags in bad.items()
    ]
    for name, result in zip(bad, forked_cli(cases), strict=True):
        assert_one_line(result, name)
        assert not (tmp_path / name).exists()
    corrected = [*train, "--max-steps-per-epoch", "2", "--out", str(tmp_path / "seed")]
    corrected += ["--seed", str(2**32 - 1)]
    [result] = forked_cli([{"args": corrected, "cwd": str(tmp_path)}])
    assert result["returncode"] == 0, result
    assert read_metadata(tmp_path / "seed" / "last.safetensors")["config"]["seed"] == 2**32 - 1


def test_project_fails_when_it_skipped_everything_and_import_keeps_its_source(
    tmp_path: Path,
) -> None:
    from safetensors.torch import save_file

    weights = [tmp_path / "plain-a.safetensors", tmp_path / "plain-b.safetensors"]
    for path in weights:
        save_file({"backbone.0.weight": torch.zeros(4, 2)}, str(path))
    source = tmp_path / "state.pth"
    model = torch.nn.Sequential(torch.nn.Linear(2, 8))
    torch.save({"0.weight": model[0].weight.detach(), "fc.weight": torch.zeros(4, 8)}, source)
    before = source.read_bytes()
    zero = tmp_path / "zero.pth"  # 1 KB that once asked for 10⁷ × 2048 floats
    torch.save({"fc.weight": torch.empty(10**7, 0)}, zero)
    assert zero.stat().st_size < 4096
    cases = [
        ["project", str(weights[0]), "--device", "cpu"],
        ["project", *map(str, weights), "--device", "cpu"],
        ["import", str(source), "--out", str(source), "--arch", "mlp"],
        ["import", str(zero), "--out", str(tmp_path / "zero.safetensors"), "--arch", "resnet50"],
    ]
    results = forked_cli([{"args": a, "cwd": str(tmp_path)} for a in cases])
    assert_one_line(results[0], str(weights[0]))
    lines = results[1]["stderr"].splitlines()
    assert results[1]["returncode"] == 2 and len(lines) == 3, results[1]
    assert all(lines[i].startswith("skipped: ") and str(weights[i]) in lines[i] for i in (0, 1))
    assert lines[2].startswith("error: every checkpoint was skipped (2)")
    assert_one_line(results[2], str(source), "is the file being imported")
    assert source.read_bytes() == before
    assert_one_line(results[3], str(zero), "(10000000, 0)", "65536")
    assert not (tmp_path / "zero.safetensors").exists()


# --- 7. checkpoints without a run's config, symlink loops, huge CSV headers in a listing ---------


def _configless(folder: Path) -> dict[str, Path]:
    """Checkpoints that pass the header check but once raised KeyError/TypeError on a page."""
    from dml_core.config import TrainConfig
    from dml_core.engine.checkpoint import save_checkpoint
    from dml_core.models import build_model
    from dml_core.presets import preset

    folder.mkdir(parents=True, exist_ok=True)
    config = TrainConfig.from_dict({**preset("toy"), "device": "cpu"}).to_dict()
    model = build_model("mlp", 2, pretrained=None, frozen_bn=False, normalize=True, in_channels=3)
    base = {"kind": "last", "config": config, "model": model.config(), "history": []}
    documents = {
        "good": base,
        "no-config": {k: v for k, v in base.items() if k != "config"},
        "empty-config": {**base, "config": {}},
        "eval-ks": {**base, "config": {**config, "eval_ks": "abc"}},
        "history": {**base, "history": [{"epoch": 1, "test/recall@1": "high"}]},
    }
    return {
        name: save_checkpoint(folder / f"{name}.safetensors", model, document)
        for name, document in documents.items()
    }


def test_checkpoints_without_a_runs_config_are_unreadable_in_cli_and_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 27 item 2: no ``config``, an empty one, ``eval_ks="abc"`` and history rows of text
    passed the header check and raised on the pages. One schema check in ``read_metadata`` (the
    config as ``TrainConfig.from_dict`` takes it, history rows of numbers): the CLI says one line
    naming the file, the app lists them as unreadable with that reason and opens the good one."""
    from app.checkpoints import discover_checkpoints
    from dml_core.engine.checkpoint_header import CheckpointError

    root = tmp_path / "extra"
    files = _configless(root)
    reasons = {
        "no-config": "has no training config",
        "empty-config": "has no training config",
        "eval-ks": "eval_ks must be a list of integers",
        "history": "'test/recall@1' is 'high'",
    }
    for name, reason in reasons.items():
        with pytest.raises(CheckpointError, match=reason) as error:
            read_metadata(files[name])
        assert str(error.value).startswith(str(files[name]))
    read_metadata(files["good"])
    cases = [["evaluate", "--checkpoint", str(files[name]), "--device", "cpu"] for name in reasons]
    cases.append(["project", str(files["history"]), "--device", "cpu"])
    results = forked_cli([{"args": a, "cwd": str(tmp_path)} for a in cases])
    for args, result in zip(cases, results, strict=True):
        assert_one_line(result, args[2] if args[0] == "evaluate" else args[1])
    monkeypatch.setenv("DML_EXPLORER_CHECKPOINT_DIRS", str(root))
    monkeypatch.setenv("DML_EXPLORER_RUNS_DIR", str(tmp_path / "runs"))
    unreadable: list[str] = []
    found = [e.label for e in discover_checkpoints(unreadable=unreadable)]
    assert "extra/good.safetensors" in found
    mine = sorted(line for line in unreadable if line.startswith("extra/"))
    assert [line.split(": ", 1)[0] for line in mine] == sorted(
        f"extra/{name}.safetensors" for name in reasons
    )
    for line in mine:
        name = line.split("/", 1)[1].split(".")[0]
        assert reasons[name] in line, line


def test_a_symlink_loop_or_a_huge_csv_does_not_break_a_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 27 items 2 and 3: a symlink loop in an allowed folder broke Inspect and Compare for
    every file ("Symlink loop"); a 2 GB sparse ``.csv`` cost 13 s and +4.1 GB on every listing,
    which needs its header alone. Now the loop is listed as unreadable, the others still open, and
    the CSV's first 2²⁰ characters are all a listing reads."""
    import resource

    from app.sources import MAX_CSV_HEADER, discover_sources, resolve_source

    root = tmp_path / "extra"
    _configless(root)
    good = _export_set(root, "good", 12)
    (root / "loop-a.npz").symlink_to(root / "loop-b.npz")
    (root / "loop-b.npz").symlink_to(root / "loop-a.npz")
    (root / "loop.safetensors").symlink_to(root / "loop.safetensors")
    (root / "again").symlink_to(root)  # a folder loop, never followed
    sparse = root / "sparse.csv"
    with open(sparse, "wb") as handle:
        handle.truncate(2 * 1024**3)  # 2 GiB of NUL bytes, no newline, no blocks on disk
    monkeypatch.setenv("DML_EXPLORER_CHECKPOINT_DIRS", str(root))
    monkeypatch.setenv("DML_EXPLORER_RUNS_DIR", str(tmp_path / "runs"))
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    unreadable: list[str] = []
    found = [source.label for source in discover_sources(unreadable=unreadable)]
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert {"extra/good.safetensors", "extra/good.npz"} <= set(found)
    assert not [label for label in found if "loop" in label or "again" in label]
    mine = sorted(line for line in unreadable if line.startswith("extra/"))
    assert "extra/loop-a.npz: a symlink loop" in mine
    assert "extra/loop-b.npz: a symlink loop" in mine
    assert "extra/loop.safetensors: a symlink loop" in mine
    assert f"extra/sparse.csv: ValueError: no header line within its first {MAX_CSV_HEADER}" in (
        " ".join(mine)
    )
    assert grown < 256 * 1024, f"a listing grew the peak RSS by {grown} KiB"
    assert resolve_source(good).kind == "embeddings"
    with pytest.raises(OSError, match="symlink loop"):
        resolve_source(root / "loop-a.npz")
