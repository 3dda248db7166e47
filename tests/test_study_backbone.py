"""The glyphs study's backbone: the pretraining script (no class shared with the benchmark, a
backbone build_model loads) and the fine-tune page's seed-0 caveat."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from dml_core.study import load_spec

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_fine_tune_caveat_holds_seed_0_starts_with_the_pretraining_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page's caveat: the backbone was pretrained with the script's default seed 0, so a
    fine-tune run of seed 0 (and only it) initialises its new head as the pretraining did."""
    from safetensors import safe_open

    from dml_core.config import TrainConfig
    from dml_core.engine.trainer import Trainer
    from dml_core.models import build_model
    from dml_core.presets import GLYPHS_BACKBONE, preset

    assert (
        "Seed 0 is not like the others"
        in load_spec(ROOT / "studies/first/glyphs-finetune.yaml").page.caveat
    )
    with safe_open(str(GLYPHS_BACKBONE), "pt") as backbone:
        assert "--seed" not in backbone.metadata()["command"]  # the script's default: 0
    values = preset("glyphs-finetune")
    torch.manual_seed(0)  # as scripts/pretrain_glyphs_backbone.py does before building its model
    pretraining_head = build_model("small_cnn", values["embed_dim"], in_channels=1).head.weight
    monkeypatch.setenv("DML_EXPLORER_CACHE", str(tmp_path))
    for seed in (0, 1):
        trainer = Trainer(TrainConfig.from_dict({**values, "device": "cpu", "seed": seed}))
        head = trainer.model.state_dict()["head.weight"]
        trainer.close()
        assert torch.equal(head, pretraining_head) == (seed == 0)


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
    assert len(json.loads(metadata["history"])) == 2
    model = build_model("small_cnn", 128, pretrained=str(out), frozen_bn=True, in_channels=1)
    loaded = model.backbone.state_dict()
    assert set(loaded) == set(stored)
    assert all(torch.equal(loaded[key], stored[key]) for key in stored)
