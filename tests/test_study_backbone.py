"""The glyphs study's backbone: the pretraining script (no class shared with the benchmark, a
backbone build_model loads) and the fine-tune page's seed-0 caveat."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from dml_core.study import load_runs, load_spec

ROOT = Path(__file__).resolve().parents[1]
FIRST_FINETUNE = ROOT / "studies/first/glyphs-finetune.yaml"


@pytest.mark.slow
def test_no_study_seed_starts_with_the_pretraining_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first study's confound, removed. Its backbone was pretrained with torch seed 0, so
    fine-tune seed 0 initialised its new head exactly as the pretraining had (its page's caveat).
    The shipped backbone records its seed in its header, outside every seed of the corrected
    study, converged by the pretraining's rule; a fine-tune with the pretraining's own seed would
    still start at the pretraining head, no study seed does."""
    from safetensors import safe_open

    from dml_core.config import TrainConfig
    from dml_core.engine.trainer import Trainer
    from dml_core.models import build_model
    from dml_core.presets import GLYPHS_BACKBONE, preset

    assert "Seed 0 is not like the others" in load_spec(FIRST_FINETUNE).page.caveat
    with safe_open(str(GLYPHS_BACKBONE), "pt") as backbone:
        metadata = backbone.metadata()
    seed = int(metadata["seed"])
    study = load_spec(ROOT / "studies/glyphs-finetune.yaml")
    study_seeds = {s for method in study.methods.values() for s in method.seeds}
    assert seed == pretrain.PRETRAIN_SEED and seed not in study_seeds
    assert metadata["stop"] == "converged"
    values = preset("glyphs-finetune")
    torch.manual_seed(seed)  # as the pretraining script does before building its model
    pretraining_head = build_model("small_cnn", values["embed_dim"], in_channels=1).head.weight
    monkeypatch.setenv("DML_EXPLORER_CACHE", str(tmp_path))
    for run_seed in (0, 1, seed):
        trainer = Trainer(TrainConfig.from_dict({**values, "device": "cpu", "seed": run_seed}))
        head = trainer.model.state_dict()["head.weight"]
        trainer.close()
        assert torch.equal(head, pretraining_head) == (run_seed == seed)


def load_pretrain_module():
    path = ROOT / "scripts/pretrain_glyphs_backbone.py"
    spec = importlib.util.spec_from_file_location("pretrain_glyphs_backbone", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pretrain = load_pretrain_module()


def test_pretraining_classes_share_no_class_program_with_the_benchmark() -> None:
    from dml_core.data.glyphs import GlyphSpec

    defaults = pretrain.parser().parse_args([])
    pretraining = GlyphSpec(
        num_classes=defaults.classes,
        samples_per_class=defaults.samples_per_class,
        seed=defaults.glyph_seed,
    )
    benchmark = GlyphSpec()  # what every glyphs preset trains and tests on
    assert pretrain.shared_class_programs(pretraining, benchmark) == []
    assert pretrain.nearest_program_distance(pretraining, benchmark) > 0.05
    # The check does find shared programs: seed 0 with more classes contains the benchmark's.
    overlapping = GlyphSpec(num_classes=defaults.classes, seed=0)
    shared = pretrain.shared_class_programs(overlapping, benchmark)
    assert shared == [(c, c) for c in range(benchmark.num_classes)]
    assert pretrain.nearest_program_distance(overlapping, benchmark) == 0.0


@pytest.mark.slow
def test_tiny_pretraining_writes_a_backbone_that_build_model_loads(tmp_path: Path) -> None:
    import torch
    from safetensors import safe_open

    from dml_core.models import build_model

    out = tmp_path / "backbone.safetensors"
    argv = ["--out", str(out), "--classes", "12", "--samples-per-class", "6"]
    argv += ["--val-samples", "2", "--image-size", "16", "--batch-size", "16"]
    argv += ["--max-epochs", "2", "--threads", "1"]
    assert pretrain.main(argv) == 0
    assert out.stat().st_size <= pretrain.MAX_FILE_BYTES
    with safe_open(str(out), "pt") as handle:
        metadata = handle.metadata()
        stored = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    assert metadata["command"] == "python scripts/pretrain_glyphs_backbone.py " + " ".join(argv)
    assert json.loads(metadata["glyph_spec"])["seed"] == pretrain.PRETRAIN_GLYPH_SEED
    assert metadata["seed"] == str(pretrain.PRETRAIN_SEED)
    assert len(json.loads(metadata["history"])) == 2
    model = build_model("small_cnn", 128, pretrained=str(out), frozen_bn=True, in_channels=1)
    loaded = model.backbone.state_dict()
    assert set(loaded) == set(stored)
    assert all(torch.equal(loaded[key], stored[key]) for key in stored)


def test_the_first_study_backbone_is_kept_with_the_sha_its_summaries_record() -> None:
    """The first study's fine-tune summaries name their backbone by SHA-256; that file is kept."""
    import hashlib

    shipped = ROOT / "checkpoints/glyphs-backbone-first-study.safetensors"
    digest = hashlib.sha256(shipped.read_bytes()).hexdigest()
    runs = load_runs(load_spec(FIRST_FINETUNE))
    assert {r.backbone for group in runs.values() for r in group} == {digest}
    current = hashlib.sha256((ROOT / "checkpoints/glyphs-backbone.safetensors").read_bytes())
    assert current.hexdigest() != digest
