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

from dml_core.engine.checkpoint import read_metadata
from dml_core.engine.events import read_events
from dml_core.metrics._inputs import MAX_EMBEDDING_NORM, EmbeddingRangeError, check_embeddings

pytestmark = pytest.mark.slow


def _forked_cli(cases: list[dict]) -> list[dict]:
    """``{"returncode", "stderr"}`` of ``python -m dml_core`` for each case (``args``, ``cwd``,
    optional ``env``), each in its own forked process (``forked_cli.py``)."""
    forked = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("forked_cli.py"))],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )
    assert forked.returncode == 0 and forked.stderr == "", forked.stderr[-3000:]
    return json.loads(forked.stdout)


def _assert_one_line(result: dict, *fragments: str) -> None:
    """A non-zero exit (not a signal) and exactly one ``error: …`` line holding every fragment."""
    lines = result["stderr"].splitlines()
    assert result["returncode"] > 0, result
    assert len(lines) == 1 and lines[0].startswith("error: "), result["stderr"][-2000:]
    assert "Traceback" not in result["stderr"]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


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
    results = _forked_cli([{"args": a, "cwd": str(tmp_path), "env": env} for a in cases])
    _assert_one_line(results[0], "too large")
    _assert_one_line(results[1], "too large")
    assert not (tmp_path / "exported").exists() or not any((tmp_path / "exported").iterdir())
    _assert_one_line(results[2], "diverged", "last good checkpoint")
    events, _ = read_events(run / "events.jsonl")
    assert events[-1]["kind"] == "error" and "diverged" in events[-1]["message"]
    evaluated = [e["epoch"] for e in events if e["kind"] == "eval"]
    assert evaluated and evaluated == list(range(1, len(evaluated) + 1))
    header = read_metadata(run / "best.safetensors")
    assert 1 <= header["epoch"] <= evaluated[-1]  # a checkpoint from before the divergence
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
