"""``python -m dml_core`` end to end on the toy: train, evaluate, embed, report; clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from forked_cli import run_forked

from dml_core.cli import main

USER_ERRORS = {
    "unknown loss": ["train", "--preset", "toy", "--loss", "nope", "--out", "x"],
    "missing checkpoint": ["evaluate", "--checkpoint", "missing.safetensors"],
    "unknown preset": ["train", "--preset", "nope"],
    "usage error": ["train", "--epochs", "two", "--out", "x"],
}
"""Command lines that must end in one ``error:`` line, run in a scratch folder."""


@pytest.fixture(scope="module")
def user_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """``{"returncode", "stderr"}`` of each of :data:`USER_ERRORS`, each ``python -m dml_core``
    in its own process, forked from one that imported the CLI once (``forked_cli.py``)."""
    folder = tmp_path_factory.mktemp("user-errors")
    results = run_forked([{"args": args, "cwd": str(folder)} for args in USER_ERRORS.values()])
    return dict(zip(USER_ERRORS, results, strict=True)) | {"folder": folder}


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for rho in (0.0, 0.3):
        for seed in (0, 1):
            code = main(
                ["train", "--preset", "toy", "--epochs", "4", "--eval-every", "2", "--rho", str(rho),
                 "--seed", str(seed), "--out", str(root / f"rho{rho}-seed{seed}"), "--no-progress"]
            )  # fmt: skip
            assert code == 0
    return root


def test_evaluate_prints_every_metric(toy_runs: Path, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    assert (
        main(["evaluate", "--checkpoint", str(toy_runs / "rho0.0-seed0" / "best.safetensors")]) == 0
    )
    metrics = json.loads(capsys.readouterr().out)
    for key in ("test/recall@1", "test/map@r", "test/nmi", "train/rho@2", "train/pi_ratio"):
        assert key in metrics
    assert 0.0 <= metrics["test/recall@1"] <= 1.0


def test_embed_writes_npz(toy_runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "emb.npz"
    checkpoint = toy_runs / "rho0.0-seed0" / "last.safetensors"
    assert (
        main(["embed", "--checkpoint", str(checkpoint), "--split", "test", "--out", str(out)]) == 0
    )
    with np.load(out) as data:
        assert data["embeddings"].shape == (60, 2)
        assert np.allclose(np.linalg.norm(data["embeddings"], axis=1), 1.0, atol=1e-5)
        assert sorted(set(data["labels"].tolist())) == [0, 1, 2, 3]
        assert data["indices"].tolist() == list(range(60))


def test_report_groups_seeds_under_both_protocols(toy_runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert main(["report", str(toy_runs), "--out", str(out)]) == 0
    markdown = (tmp_path / "report.md").read_text()
    assert "paper protocol" in markdown and "fair protocol" in markdown
    assert "| rho=0.0 | 2 |" in markdown and "| rho=0.3 | 2 |" in markdown
    csv_lines = (tmp_path / "report.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 2 * 2  # header + 2 groups × 2 protocols


def test_user_errors_are_one_line_not_a_traceback(user_errors: dict) -> None:
    result = user_errors["unknown loss"]
    assert result["returncode"] == 2
    assert result["stderr"].startswith("error: unknown loss 'nope'; valid names:")
    assert "Traceback" not in result["stderr"]
    assert not (user_errors["folder"] / "x").exists()
    result = user_errors["missing checkpoint"]
    assert result["returncode"] == 2 and "does not exist" in result["stderr"]
    result = user_errors["unknown preset"]
    assert result["returncode"] == 2 and "valid presets" in result["stderr"]


def test_miner_none_with_rho_says_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A triplet loss given no miner is told it needs one (not that it "mines internally")."""
    out = tmp_path / "x"
    args = ["train", "--preset", "toy", "--loss", "margin", "--miner", "none", "--rho", "0.3"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: margin needs triplet tuples from a miner")
    assert "--miner none gives no tuples" in error and "mines internally" not in error
    assert not out.exists()


def test_a_usage_error_is_one_line(user_errors: dict) -> None:
    result = user_errors["usage error"]
    assert result["returncode"] == 2
    assert result["stderr"].splitlines() == [
        "error: python -m dml_core train: argument --epochs: invalid int value: 'two'"
    ]
