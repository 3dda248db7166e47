"""scripts/glyphs_study.py: results from summaries alone (full and partial studies) and the runner."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dml_core.engine.events import EventLog

ROOT = Path(__file__).resolve().parents[1]


def load_study_module():
    spec = importlib.util.spec_from_file_location("glyphs_study", ROOT / "scripts/glyphs_study.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["glyphs_study"] = module
    spec.loader.exec_module(module)
    return module


study = load_study_module()


def write_fake_summary(
    root: Path,
    regime: str,
    method: str,
    seed: int,
    *,
    val: list[float],
    test: list[float],
    rho2: float,
    pi_ratio: float,
    train: list[float] | None = None,
    stop: str = "converged",
) -> None:
    history = {
        "epoch": list(range(1, len(val) + 1)),
        "val/map@r": val,
        "val/recall@1": [0.95] * len(val),
        "test/recall@1": test,
        "train/rho@2": [rho2] * len(val),
        "train/pi_ratio": [pi_ratio] * len(val),
    }
    if train is not None:
        history["train/recall@1"] = train
    document = {
        "format": study.SUMMARY_FORMAT,
        "regime": regime,
        "method": method,
        "seed": seed,
        "stop": stop,
        "train_seconds": 90.0,
        "command": "python -m dml_core train …",
        "config": {"seed": seed},
        "history": history,
    }
    path = root / regime / f"{method}-seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))


BASE_R1 = {
    "margin": 0.600,
    "triplet": 0.601,
    "contrastive": 0.599,
    "multisimilarity": 0.600,
    "softmax": 0.602,
}


def final_recall(method: str, seed: int, rng: np.random.Generator) -> float:
    """Methods alike, ρ variants +0.03, a shared per-seed offset that pairing removes."""
    base = BASE_R1.get(method.split("-rho")[0], 0.6)
    return base + (0.03 if "-rho" in method else 0.0) + 0.01 * seed + rng.normal(0, 0.001)


def full_finetune_study(root: Path) -> None:
    rng = np.random.default_rng(0)
    for seed in study.SEEDS:
        for method in study.METHODS:
            r1 = final_recall(method, seed, rng)
            # Validation peaks at the 4th evaluation; test follows it.
            val = [r1 - 0.1, r1 - 0.05, r1 - 0.01, r1, r1 - 0.002, r1 - 0.003]
            write_fake_summary(
                root,
                "finetune",
                method,
                seed,
                val=val,
                test=[v - 0.02 for v in val],
                train=[v + 0.2 for v in val],
                rho2=1.0 - r1,  # lower ρ@2 with higher Recall@1, as the paper reports
                pi_ratio=r1,
            )


def partial_scratch_study(root: Path) -> None:
    for seed, offset in ((0, 0.0), (1, 0.002)):
        rising = [0.30, 0.40, 0.45, 0.50]
        write_fake_summary(
            root, "scratch", "margin", seed, val=rising, test=[0.5 + offset] * 4,
            rho2=0.3, pi_ratio=1.3, stop="epoch cap",
        )  # fmt: skip
        write_fake_summary(
            root, "scratch", "margin-rho0.35", seed, val=rising, test=[0.45] * 4,
            rho2=0.35, pi_ratio=1.8, stop="epoch cap",
        )  # fmt: skip
        write_fake_summary(
            root, "scratch", "triplet", seed, val=rising, test=[0.55 - offset] * 4,
            rho2=0.9, pi_ratio=0.6, stop="epoch cap",
        )  # fmt: skip


def section(page: str, regime: str) -> str:
    start = page.index(f"## Regime `{regime}`")
    end = page.find("## Regime", start + 1)
    return page[start : end if end > 0 else None]


def test_results_from_a_full_and_a_partial_study(tmp_path: Path) -> None:
    summaries = tmp_path / "study"
    full_finetune_study(summaries)
    partial_scratch_study(summaries)
    out = tmp_path / "RESULTS.md"
    assert study.main(["results", "--study", str(summaries), "--out", str(out)]) == 0
    page = out.read_text()

    finetune = section(page, "finetune")
    assert "**45 of 45 runs finished** (45 converged by the rule, 0 stopped" in finetune
    assert "remain" not in finetune and "provisional" not in finetune
    assert "**Claim 1: methods perform alike under the fair protocol: holds.**" in finetune
    assert "**Claim 2: ρ-regularization raises Recall@1 for triplet-family losses: holds.**" in (
        finetune
    )
    assert "correlate with test Recall@1 across methods: holds.**" in finetune
    # Every run with its selected epoch (the 4th evaluation) and a zero last-quarter gain.
    assert finetune.count("| converged | 6 | 4 | +0.0000 |") == 45
    assert "| train R@1 |" in finetune  # train Recall@1 is shown next to test
    assert "| margin | 5 | 0 |" in finetune  # no run reached the epoch cap
    # ρ@2 = 1 − R@1 exactly: the method means are perfectly anti-monotone.
    assert "| train/rho@2 | 9 | -1.00 [-1.00, -1.00] | -1.00 [-1.00, -1.00] | -0.80 |" in finetune
    # Claim 2's table: margin ρ0.35 − margin ≈ +0.03 on 5 seeds, interval above 0.
    row = next(line for line in finetune.splitlines() if line.startswith("| margin-rho0.35 −"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1] == "5" and abs(float(cells[2]) - 0.03) < 0.003 and cells[4] == "holds"
    # The mechanism column: ρ@2 = 1 − R@1 here, so ρ lowered train ρ@2 by as much as it raised R@1.
    estimate, interval = cells[5].split(" ", 1)
    low, high = (float(v) for v in interval.strip("[]").split(", "))
    r1_low, r1_high = (float(v) for v in cells[3].strip("[]").split(", "))
    assert float(estimate) == -float(cells[2]) and (low, high) == (-r1_high, -r1_low)

    scratch = section(page, "scratch")
    assert "**6 of 45 runs finished** (0 converged by the rule, 6 stopped at the epoch cap)" in (
        scratch
    )
    assert (
        "39 remain; continue them with `python scripts/glyphs_study.py run --regime scratch`"
        in (scratch)
    )
    assert "the verdicts below are provisional" in scratch
    # margin + ρ is 0.05 below margin on both seeds: the interval lies below 0.
    assert "ρ-regularization raises Recall@1 for triplet-family losses: fails.**" in scratch
    row = next(line for line in scratch.splitlines() if line.startswith("| margin-rho0.35 −"))
    # ρ@2 0.35 with ρ against 0.30 without on both seeds: a zero-width interval above 0.
    assert row.rstrip().endswith("| fails | +0.0500 [+0.0500, +0.0500] |")
    assert "| triplet-rho0.35 − triplet | 0 | – | – | inconclusive | – |" in scratch
    # The last-quarter gain of a run still rising at its cap: 0.50 − 0.45.
    assert "| margin seed 0 | epoch cap | 4 | 4 | +0.0500 |" in scratch
    assert "| margin | 2 | 2 (+0.0500) |" in scratch  # both at the cap, median gain 0.05
    assert "Train-split Recall@1 was not recorded" in scratch
    # Only 3 methods with ≥ 2 runs: correlations are computed, the pairs without data are not.
    assert "| train/rho@2 | 3 |" in scratch
    assert "| margin − multisimilarity | 0 | – | – | – | inconclusive |" in scratch


def test_results_draw_every_run_of_a_regime_from_its_summary(tmp_path: Path) -> None:
    summaries = tmp_path / "study"
    partial_scratch_study(summaries)
    out = tmp_path / "docs" / "RESULTS.md"
    out.parent.mkdir()
    page = study.results(summaries, out)
    # Only the regime with runs gets a figure, beside the summaries, linked from the page's folder.
    assert (summaries / "scratch-curves.png").stat().st_size > 10_000
    assert not (summaries / "finetune-curves.png").exists()
    assert "![validation MAP@R of every run per evaluation](../study/scratch-curves.png)" in page
    by_method = study.load_regime(summaries, "scratch")
    figure = study.curves_figure(by_method, "scratch")
    panels = [a for a in figure.axes if a.get_visible()]
    assert [a.get_title() for a in panels] == ["margin", "margin-rho0.35", "triplet"]
    for panel, method in zip(panels, ["margin", "margin-rho0.35", "triplet"], strict=True):
        runs = by_method[method]
        lines = panel.get_lines()  # per run: its curve, then its selected epoch
        assert len(lines) == 2 * len(runs)
        for run, curve, dot in zip(runs, lines[::2], lines[1::2], strict=True):
            assert list(curve.get_ydata()) == run.series(study.SELECTION_METRIC)
            assert curve.get_linestyle() == "--"  # every run here stopped at the epoch cap
            assert list(dot.get_xdata()) == [run.selected_epoch]


def test_a_run_selected_at_its_first_evaluation_is_named(tmp_path: Path) -> None:
    summaries = tmp_path / "study"
    partial_scratch_study(summaries)
    assert "Selected at their first evaluation" not in study.results_page(summaries)
    write_fake_summary(
        summaries, "scratch", "softmax", 0, val=[0.5, 0.3, 0.4, 0.45], test=[0.7] * 4,
        rho2=0.2, pi_ratio=1.0,
    )  # fmt: skip
    page = study.results_page(summaries)
    assert "Selected at their first evaluation: softmax seed 0. Validation MAP@R never" in page


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

    assert "Seed 0 is not like the others" in study.REGIMES["finetune"].caveat
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


def test_results_with_no_summaries_say_what_remains(tmp_path: Path) -> None:
    page = study.results(tmp_path / "empty", tmp_path / "RESULTS.md")
    assert page.count("**0 of 45 runs finished**") == 2
    assert "run --regime finetune" in page and "run --regime scratch" in page


def test_results_depend_only_on_the_summaries(tmp_path: Path) -> None:
    summaries = tmp_path / "study"
    partial_scratch_study(summaries)
    first = study.results_page(summaries)
    assert study.results_page(summaries) == first  # the bootstrap has a fixed seed
    write_fake_summary(
        summaries, "scratch", "softmax", 0, val=[0.1, 0.2, 0.3, 0.4], test=[0.1] * 4,
        rho2=0.2, pi_ratio=1.0,
    )  # fmt: skip
    assert study.results_page(summaries) != first


def test_shards_partition_the_tasks_seed_by_seed() -> None:
    tasks = study.all_tasks("finetune")
    assert len(tasks) == len(study.METHODS) * len(study.SEEDS) >= 45
    assert len(set(study.METHODS)) >= 8
    assert [t.seed for t in tasks[: len(study.METHODS)]] == [0] * len(study.METHODS)
    shards = [study.shard(tasks, i, 4) for i in range(1, 5)]
    assert sorted((t.method, t.seed) for s in shards for t in s) == sorted(
        (t.method, t.seed) for t in tasks
    )
    assert study.parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "x", "1-4"):
        with pytest.raises(ValueError, match="shard"):
            study.parse_shard(bad)


def fake_run_dir(run_dir: Path, val: list[float], *, finished: bool) -> None:
    """A run directory as the trainer writes it: config.json and events.jsonl."""
    run_dir.mkdir(parents=True)
    backbone = run_dir.parent / "backbone.safetensors"
    backbone.write_bytes(b"weights")
    config = {"seed": 0, "loss": "margin", "pretrained": str(backbone)}
    (run_dir / "config.json").write_text(json.dumps(config))
    log = EventLog(run_dir / "events.jsonl")
    log.write("start", epoch=0, step=0)
    for epoch, value in enumerate(val, start=1):
        log.write("epoch", epoch=epoch, step=10 * epoch, mean_loss=0.1, seconds=30.0, lr=1e-4)
        # Validation Recall@1 saturated (flat), MAP@R the selection metric.
        metrics = {"val/map@r": value, "test/recall@1": value - 0.1, "val/recall@1": 0.95}
        metrics["val/nmi"] = 0.5
        log.write("eval", epoch=epoch, step=10 * epoch, metrics=metrics)
    if finished:
        log.write("done", epoch=len(val), step=10 * len(val), reason="finished")
    log.close()


def test_completion_summary_and_command_from_run_directories(tmp_path: Path) -> None:
    runs, summaries = tmp_path / "runs", tmp_path / "study"
    regime = study.REGIMES["finetune"]
    # Converged at evaluation 8 (best at 6, epochs ≥ min_epochs); two later evaluations were
    # written before the stop took effect and are not part of the protocol's history.
    converged = study.Task("finetune", "margin", 0)
    values = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.55, 0.58, 0.61, 0.62]
    fake_run_dir(converged.run_dir(runs), values, finished=False)
    assert regime.min_epochs <= 8
    assert study.stopping_point(study.eval_history(converged.run_dir(runs)), regime) == 8
    assert study.write_summary(converged, runs, summaries)
    summary = json.loads(converged.summary_path(summaries).read_text())
    assert summary["stop"] == "converged"
    assert summary["history"]["epoch"] == list(range(1, 9))
    assert summary["history"]["val/map@r"][-1] == 0.58
    assert summary["stopping_rule"]["metric"] == "val/map@r"
    assert "val/nmi" not in summary["history"]  # only the summary's metrics are kept
    assert summary["pretrained_sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert summary["train_seconds"] == 300.0
    assert "--preset glyphs-finetune" in summary["command"]
    assert len(converged.summary_path(summaries).read_bytes()) < 8_000

    # Still improving and not done: not over, so it is resumed (state files present) …
    rising = study.Task("finetune", "triplet", 0)
    fake_run_dir(rising.run_dir(runs), [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], finished=False)
    assert not study.write_summary(rising, runs, summaries)
    (rising.run_dir(runs) / "last.safetensors").write_bytes(b"x")
    (rising.run_dir(runs) / "train_state.pt").write_bytes(b"x")
    command = study.trainer_command(rising, runs, [])
    assert command[-3:] == ["--resume", str(rising.run_dir(runs)), "--no-progress"]

    # … while a directory without a resumable state is cleared and started afresh.
    broken = study.Task("finetune", "softmax", 3)
    fake_run_dir(broken.run_dir(runs), [0.1], finished=False)
    command = study.trainer_command(broken, runs, ["--epochs", "1"])
    assert not broken.run_dir(runs).exists()
    assert command[command.index("--seed") + 1] == "3"
    assert command[command.index("--preset") + 1] == "glyphs-finetune"
    assert command[-5:] == ["--epochs", "1", "--out", str(broken.run_dir(runs)), "--no-progress"]

    # A run that reached its cap without converging is over too.
    capped = study.Task("scratch", "contrastive", 1)
    fake_run_dir(capped.run_dir(runs), [0.1, 0.2, 0.3, 0.4, 0.5], finished=True)
    assert study.write_summary(capped, runs, summaries)
    assert json.loads(capped.summary_path(summaries).read_text())["stop"] == "epoch cap"


@pytest.mark.slow
def test_run_trains_one_tiny_task_then_skips_it(tmp_path: Path) -> None:
    """The real trainer on a tiny glyph set: shard 1/45 is margin seed 0 of the scratch regime."""
    runs, summaries = tmp_path / "runs", tmp_path / "study"
    flags = (
        "--dataset-options num_classes=20,samples_per_class=6,image_size=16 "
        "--batch-size 8 --epochs 1 --eval-ks 1 --snapshots off"
    )
    args = ["run", "--regime", "scratch", "--shard", "1/45", "--runs", str(runs)]
    args += ["--study", str(summaries), "--trainer-flags", flags]
    assert study.main(args) == 0
    summary = json.loads((summaries / "scratch" / "margin-seed0.json").read_text())
    assert summary["stop"] == "epoch cap"
    assert summary["config"]["val_classes"] == 0.2 and summary["config"]["epochs"] == 1
    assert summary["history"]["epoch"] == [1]
    assert math.isfinite(summary["history"]["val/map@r"][0])
    assert summary["pretrained_sha256"] is None  # from scratch
    # A second pass finds nothing to train in this shard.
    assert study.run("scratch", "1/45", 1, runs=runs, study=summaries, poll_seconds=0.1) == 44


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


def test_results_refuse_runs_from_different_backbones(tmp_path: Path) -> None:
    summaries = tmp_path / "study"
    for seed, backbone in ((0, "aa" * 32), (1, "bb" * 32)):
        write_fake_summary(summaries, "finetune", "margin", seed, val=[0.5], test=[0.4], rho2=0.3,
                           pi_ratio=0.5)  # fmt: skip
        path = summaries / "finetune" / f"margin-seed{seed}.json"
        document = json.loads(path.read_text())
        path.write_text(json.dumps({**document, "pretrained_sha256": backbone}))
    with pytest.raises(ValueError, match="different backbones"):
        study.load_regime(summaries, "finetune")
    (summaries / "finetune" / "margin-seed1.json").unlink()
    assert len(study.load_regime(summaries, "finetune")["margin"]) == 1
