"""One selection rule: ``report``'s fair row, the trainer's ``best.safetensors`` and the study pick
the same epoch (each run's own ``--best-metric``, best value, ties to the earliest, NaN never)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from dml_core.config import TrainConfig
from dml_core.engine.checkpoint_header import read_metadata
from dml_core.engine.stopping import best_index
from dml_core.metrics.direction import improves
from dml_core.presets import preset
from dml_core.report import load_run, protocol_values
from dml_core.study import load_runs, load_spec

ROOT = Path(__file__).resolve().parents[1]


def trainer_rule(values: list[float | None], metric: str) -> int | None:
    """The trainer's incremental rule, written out: an evaluation becomes best when it
    ``improves`` on the best so far (trainer.py's ``_evaluate``)."""
    best, chosen = None, None
    for index, value in enumerate(values):
        value = math.nan if value is None else value
        if improves(metric, value, best):
            best, chosen = value, index
    return chosen


def test_best_index_ties_to_the_earliest_and_never_picks_nan() -> None:
    assert best_index([0.1, 0.3, 0.3, 0.2], "val/map@r") == 1
    assert best_index([math.nan, 0.2, None, 0.2], "val/map@r") == 1
    assert best_index([0.5, 0.4, 0.4, 0.6], "train/rho@2") == 1  # lower is better
    assert best_index([None, math.nan], "val/map@r") is None


@pytest.mark.slow
def test_the_report_fair_row_is_the_epoch_of_best_safetensors(tmp_path: Path) -> None:
    values = {
        **preset("glyphs"),
        "dataset_options": {"num_classes": 20, "samples_per_class": 8, "image_size": 16},
        "batch_size": 16, "epochs": 5, "eval_every": 1, "eval_ks": [1], "snapshots": "off",
        "device": "cpu", "val_classes": 0.2, "best_metric": "map@r",
    }  # fmt: skip
    from dml_core.engine.trainer import Trainer

    Trainer(TrainConfig.from_dict(values), tmp_path / "run").run()
    run = load_run(tmp_path / "run")
    best = read_metadata(tmp_path / "run" / "best.safetensors")
    fair = protocol_values(run, ["epoch", "test/recall@1"])["fair"]
    assert fair["epoch"] == best["epoch"]
    expected = trainer_rule([row.get("val/map@r") for row in run.history], "val/map@r")
    assert run.history[expected]["epoch"] == best["epoch"]
    # Selecting on validation Recall@1 instead (what report did before) is another rule.
    by_recall = protocol_values(run, ["epoch"], "recall@1")["fair"]["epoch"]
    recall_index = trainer_rule([row.get("val/recall@1") for row in run.history], "val/recall@1")
    assert by_recall == run.history[recall_index]["epoch"]


@pytest.mark.parametrize("study", ["glyphs-finetune", "glyphs-scratch"])
def test_the_study_selects_what_the_trainer_would_have_for_every_shipped_run(study: str) -> None:
    spec = load_spec(ROOT / f"studies/first/{study}.yaml")
    runs = [r for group in load_runs(spec).values() for r in group]
    assert len(runs) == 45
    for run in runs:
        index = trainer_rule(run.history[spec.selection_metric], spec.selection_metric)
        assert run.selected_epoch == run.history["epoch"][index], (run.method, run.seed)
