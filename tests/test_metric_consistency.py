"""One checkpoint, one ρ: the stored evaluation, the run's history at that epoch and
``python -m dml_core evaluate`` give the same test ρ@k, on the spectrum the run's config names."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from dml_core.cli import main
from dml_core.config import TrainConfig
from dml_core.engine.checkpoint_header import read_metadata
from dml_core.engine.stored_evaluation import build_evaluation, write_evaluation
from dml_core.engine.stored_section import StoredEvaluationError, read_evaluation
from dml_core.engine.trainer import Trainer
from dml_core.presets import preset

TINY_OFFICIAL = {
    **preset("glyphs"),  # rho_spectrum "official", as the glyphs and paper presets set it
    "dataset_options": {"num_classes": 12, "samples_per_class": 8, "image_size": 32},
    "embed_dim": 16,
    "batch_size": 16,
    "epochs": 1,
    "eval_every": 1,
    "eval_batch_size": 64,
    "device": "cpu",
}
RANKS = ("test/rho@1", "test/rho@2")

pytestmark = pytest.mark.slow  # one tiny glyphs run, stored evaluation (UMAP) included


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("official-run")
    Trainer(TrainConfig.from_dict(TINY_OFFICIAL), out, progress=False).run()
    return out


def test_stored_history_and_evaluate_give_one_rho(run_dir: Path, capsys) -> None:
    path = run_dir / "last.safetensors"
    metadata = read_metadata(path)
    assert metadata["config"]["rho_spectrum"] == "official"
    stored = read_evaluation(path)
    assert stored is not None and stored.rho_spectrum == "official"
    (history,) = [h for h in metadata["history"] if h["epoch"] == stored.epoch]
    assert main(["evaluate", "--checkpoint", str(path), "--device", "cpu", "--splits", "test"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    for key in RANKS:
        assert math.isfinite(stored.metrics[key])
        assert stored.metrics[key] == pytest.approx(history[key], rel=1e-6, abs=1e-9), key
        assert evaluated[key] == pytest.approx(history[key], rel=1e-6, abs=1e-9), key


def test_the_full_spectrum_gives_another_number_here(run_dir: Path) -> None:
    """The check above is not vacuous: on this run "full" and "official" differ."""
    stored = read_evaluation(run_dir / "last.safetensors")
    full = build_evaluation(
        stored.embeddings, stored.labels, stored.item_ids, stored.class_names, umap=None
    )
    assert full.rho_spectrum == "full"
    assert abs(full.metrics["test/rho@1"] - stored.metrics["test/rho@1"]) > 1e-3


def test_a_section_on_another_spectrum_is_refused_and_project_stores_it_again(
    run_dir: Path, tmp_path: Path, capsys
) -> None:
    path = Path(shutil.copy(run_dir / "last.safetensors", tmp_path / "old.safetensors"))
    good = read_evaluation(path)
    stale = build_evaluation(
        good.embeddings, good.labels, good.item_ids, good.class_names, umap=None
    )  # what the stored section held before it followed the run's config: the full spectrum
    write_evaluation(path, stale)
    with pytest.raises(StoredEvaluationError, match=r"'full' spectrum.*says 'official'"):
        read_evaluation(path)
    assert main(["project", str(path), "--device", "cpu", "--no-umap"]) == 0
    capsys.readouterr()
    again = read_evaluation(path)
    for key in RANKS:
        assert again.metrics[key] == pytest.approx(good.metrics[key], rel=1e-6, abs=1e-9)
