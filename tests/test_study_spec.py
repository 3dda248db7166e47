"""Study files: the glyphs studies load, and every bad study file is one line before anything trains."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dml_core.config import TrainConfig
from dml_core.presets import PRESETS
from dml_core.study import StudyError, load_runs, load_spec

ROOT = Path(__file__).resolve().parents[1]
TOY = """\
name: mini
preset: glyphs
overrides: {val_classes: 0.2, eval_every: 1}
epochs: 4
seeds: [0, 1]
methods:
  margin: {loss: margin, miner: distance}
  triplet: {loss: triplet, miner: distance, seeds: [0, 1, 2]}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def test_the_glyphs_study_files_describe_todays_study() -> None:
    finetune = load_spec(ROOT / "studies/first/glyphs-finetune.yaml")
    scratch = load_spec(ROOT / "studies/first/glyphs-scratch.yaml")
    for spec, preset, cap, every, min_epochs in (
        (finetune, "glyphs-finetune", 20, 1, 8),
        (scratch, "glyphs", 40, 2, 20),
    ):
        assert spec.preset == preset and spec.epochs == cap and spec.seeds == (0, 1, 2, 3, 4)
        assert spec.selection_metric == "val/map@r"
        assert (spec.stopping.min_epochs, spec.stopping.last_fraction) == (min_epochs, 0.25)
        assert len(spec.methods) == 9 and len(spec.tasks()) == 45
        config = spec.config("margin-rho0.35", 3)
        assert (config.loss, config.miner, config.rho, config.seed) == (
            "margin",
            "distance",
            0.35,
            3,
        )
        assert (config.epochs, config.eval_every, config.val_classes) == (cap, every, 0.2)
        assert config.early_stop and config.early_stop_min_epochs == min_epochs
        assert config.best_metric == "map@r" and spec.config("softmax", 0).miner is None
        # Every shipped summary loads (format 2, from before study files) for each method and seed.
        runs = load_runs(spec)
        assert list(runs) == list(spec.methods)
        assert all([r.seed for r in group] == [0, 1, 2, 3, 4] for group in runs.values())
        assert spec.summaries_dir == ROOT / "docs/study" / spec.name
        # What the first study ran: margin normalised by its active terms (the default then).
        assert config.loss_options == {"normalization": "active_terms"}
    # The glyphs-finetune preset follows the corrected study now (tests/test_trainer.py checks).
    assert PRESETS["glyphs-finetune"]["epochs"] == 40 != finetune.epochs


def test_method_seeds_defaults_and_the_protocol_hash(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, TOY))
    assert spec.methods["margin"].seeds == (0, 1) and spec.methods["triplet"].seeds == (0, 1, 2)
    assert spec.tasks() == [
        ("margin", 0), ("triplet", 0), ("margin", 1), ("triplet", 1), ("triplet", 2)
    ]  # fmt: skip
    assert (
        spec.runs_dir == tmp_path / "runs/mini"
        and spec.summaries_dir == spec.runs_dir / "summaries"
    )
    assert spec.with_output(tmp_path / "x").summaries_dir == tmp_path / "x/summaries"
    base = spec.protocol_hash("margin")
    assert base != spec.protocol_hash("triplet")
    # More seeds or another page text keep the hash; a changed rule, cap or method field does not.
    same = TOY.replace("seeds: [0, 1]", "seeds: [0, 1, 2, 3]") + "page: {title: Mine}\n"
    assert load_spec(write(tmp_path, same)).protocol_hash("margin") == base
    for changed in (
        TOY.replace("epochs: 4", "epochs: 5"),
        TOY.replace("miner: distance}", "miner: distance, rho: 0.35}", 1),
        TOY + "stopping: {min_epochs: 2}\n",
        TOY + "stopping: {from_recovery: true}\n",
        TOY.replace("eval_every: 1", "eval_every: 2"),
    ):
        assert load_spec(write(tmp_path, changed)).protocol_hash("margin") != base


def test_a_method_may_have_its_own_cap(tmp_path: Path) -> None:
    """A slower method gets a longer cap: its runs train to it and its summaries say so; the
    other methods' protocol (and so their finished summaries) stay as they were."""
    from dml_core.study.page import section

    spec = load_spec(write(tmp_path, TOY))
    longer = load_spec(
        write(tmp_path, TOY.replace("{loss: triplet,", "{loss: triplet, epochs: 9,"))
    )
    assert (longer.cap("triplet"), longer.cap("margin")) == (9, 4)
    assert longer.config("triplet", 0).epochs == 9 and longer.config("margin", 0).epochs == 4
    assert longer.protocol_hash("margin") == spec.protocol_hash("margin")
    assert longer.protocol_hash("triplet") != spec.protocol_hash("triplet")
    assert longer.own_caps() == {"triplet": 9} and spec.own_caps() == {}
    assert "at the latest at epoch 4 (triplet: epoch 9)." in "\n".join(section(longer, {}))


BAD = {
    "unknown key": (TOY + "seed: 3\n", "unknown key(s) seed"),
    "unknown method field": (
        TOY.replace("{loss: margin,", "{loss: margin, pushes: 0.3,"),
        "methods.margin: unknown key(s) ['pushes']",
    ),
    "duplicate method": (
        TOY + "  margin: {loss: margin, rho: 0.35}\n",
        "line 9: 'margin' is given twice",
    ),
    "unknown verdict rules": (
        TOY + "comparisons: {rules: 3}\n",
        "comparisons.rules must be 1 or 2",
    ),
    "negative sampling error": (
        TOY + "comparisons: {sampling_error: -0.01}\n",
        "comparisons.sampling_error must be a finite number >= 0",
    ),
    "non-integer seed": (TOY.replace("[0, 1]", "[0, 1.5]"), "seeds must be integers, got 1.5"),
    "string seed": (TOY.replace("[0, 1]", "[0, '1']"), "seeds must be integers, got '1'"),
    "method seed": (
        TOY.replace("[0, 1, 2]", "[0, x]"),
        "methods.triplet.seeds: seeds must be integers",
    ),
    "unknown metric": (
        TOY + "selection: val/accuracy\n",
        "selection: 'val/accuracy' is not a metric",
    ),
    "wrong split": (TOY + "selection: test/map@r\n", "the runs select on the val split"),
    "invalid config": (
        TOY.replace("{loss: triplet,", "{loss: triplet, rho: 1.5,"),
        "rho is a probability",
    ),
    "reserved field": (
        TOY.replace("{loss: margin,", "{loss: margin, best_metric: map@r,"),
        "belong to the study",
    ),
    "reserved override": (
        TOY.replace("eval_every: 1}", "eval_every: 1, epochs: 3}"),
        "belong to the study",
    ),
    "method cap": (
        TOY.replace("{loss: margin,", "{loss: margin, epochs: 0,"),
        "methods.margin: epochs must be at least 1, got 0",
    ),
    "unknown pair": (
        TOY + "comparisons: {rho_pairs: [[margin, nope]]}\n",
        "'nope' is not a method",
    ),
    "unknown stopping key": (
        TOY + "stopping: {patience: 3}\n",
        "stopping: unknown key(s) patience",
    ),
    "bad yaml": (TOY + "methods: [\n", "is not valid YAML"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_study_file_is_one_line(tmp_path: Path, case: str) -> None:
    text, message = BAD[case]
    with pytest.raises(StudyError) as raised:
        load_spec(write(tmp_path, text))
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert str(raised.value).startswith(f"study file {tmp_path / 'study.yaml'}")
    assert isinstance(raised.value, ValueError)


def test_the_cli_prints_a_bad_study_file_as_one_line_before_training(tmp_path: Path) -> None:
    path = write(tmp_path, BAD["duplicate method"][0])
    result = subprocess.run(
        [sys.executable, "-m", "dml_core", "study", "run", str(path)],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "'margin' is given twice" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_every_method_config_is_a_valid_train_config(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, TOY))
    config = spec.config("triplet", 2)
    assert isinstance(config, TrainConfig) and config.seed == 2 and config.epochs == 4
    assert config.early_stop_fraction == 0.25 and config.early_stop_min_delta == 0.0
