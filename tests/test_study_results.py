"""The results page from summaries alone (full and partial studies), its curves and CSV, and the
glyphs page regenerated from the shipped summaries with today's numbers."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from dml_core.study import StudyError, load_runs, load_spec
from dml_core.study.figures import curves_figure
from dml_core.study.page import figure_path, results_page, write_results
from dml_core.study.summaries import FORMAT

ROOT = Path(__file__).resolve().parents[1]
FINETUNE, SCRATCH = (
    ROOT / "studies/first/glyphs-finetune.yaml",
    ROOT / "studies/first/glyphs-scratch.yaml",
)


def specs(folder: Path):
    """The two glyphs study files with their summaries in ``folder/<name>/summaries``."""
    return [load_spec(p).with_output(folder / p.stem) for p in (FINETUNE, SCRATCH)]


def write_fake_summary(
    spec, method: str, seed: int, *, val: list[float], test: list[float], rho2: float,
    pi_ratio: float, train: list[float] | None = None, stop: str = "converged",
) -> None:  # fmt: skip
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
        "format": FORMAT,
        "regime": spec.name,
        "method": method,
        "seed": seed,
        "stop": stop,
        "train_seconds": 90.0,
        "command": "python -m dml_core train …",
        "config": {"seed": seed},
        "protocol_hash": spec.protocol_hash(method),
        "history": history,
    }
    path = spec.summaries_dir / f"{method}-seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))


BASE_R1 = {"margin": 0.600, "triplet": 0.601, "contrastive": 0.599, "multisimilarity": 0.600,
           "softmax": 0.602}  # fmt: skip


def final_recall(method: str, seed: int, rng: np.random.Generator) -> float:
    """Methods alike, ρ variants +0.03, a shared per-seed offset that pairing removes."""
    base = BASE_R1.get(method.split("-rho")[0], 0.6)
    return base + (0.03 if "-rho" in method else 0.0) + 0.01 * seed + rng.normal(0, 0.001)


def full_finetune_study(spec) -> None:
    rng = np.random.default_rng(0)
    for seed in spec.seeds:
        for method in spec.methods:
            r1 = final_recall(method, seed, rng)
            # Validation peaks at the 4th evaluation; test follows it.
            val = [r1 - 0.1, r1 - 0.05, r1 - 0.01, r1, r1 - 0.002, r1 - 0.003]
            write_fake_summary(
                spec, method, seed, val=val, test=[v - 0.02 for v in val],
                train=[v + 0.2 for v in val],
                rho2=1.0 - r1,  # lower ρ@2 with higher Recall@1, as the paper reports
                pi_ratio=r1,
            )  # fmt: skip


def partial_scratch_study(spec) -> None:
    for seed, offset in ((0, 0.0), (1, 0.002)):
        rising = [0.30, 0.40, 0.45, 0.50]
        write_fake_summary(spec, "margin", seed, val=rising, test=[0.5 + offset] * 4,
                           rho2=0.3, pi_ratio=1.3, stop="epoch cap")  # fmt: skip
        write_fake_summary(spec, "margin-rho0.35", seed, val=rising, test=[0.45] * 4,
                           rho2=0.35, pi_ratio=1.8, stop="epoch cap")  # fmt: skip
        write_fake_summary(spec, "triplet", seed, val=rising, test=[0.55 - offset] * 4,
                           rho2=0.9, pi_ratio=0.6, stop="epoch cap")  # fmt: skip


def section(page: str, regime: str) -> str:
    start = page.index(f"## Regime `{regime}`")
    end = page.find("## Regime", start + 1)
    return page[start : end if end > 0 else None]


def test_results_from_a_full_and_a_partial_study(tmp_path: Path) -> None:
    finetune_spec, scratch_spec = specs(tmp_path)
    full_finetune_study(finetune_spec)
    partial_scratch_study(scratch_spec)
    page = results_page([finetune_spec, scratch_spec])

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
    assert f"39 remain; continue them with `python -m dml_core study run {SCRATCH.as_posix()}`" in (
        scratch
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


def test_results_draw_every_run_and_list_it_in_the_csv(tmp_path: Path) -> None:
    finetune_spec, scratch_spec = specs(tmp_path)
    partial_scratch_study(scratch_spec)
    out = tmp_path / "docs" / "RESULTS.md"
    page = write_results([finetune_spec, scratch_spec], out)
    # Only the study with runs gets a figure, beside the page, linked from the page's folder.
    assert figure_path(scratch_spec, out).stat().st_size > 10_000
    assert not figure_path(finetune_spec, out).exists()
    assert "![validation MAP@R of every run per evaluation](study/scratch-curves.png)" in page
    by_method = load_runs(scratch_spec)
    figure = curves_figure(scratch_spec, by_method)
    panels = [a for a in figure.axes if a.get_visible()]
    assert [a.get_title() for a in panels] == ["margin", "margin-rho0.35", "triplet"]
    for panel, method in zip(panels, ["margin", "margin-rho0.35", "triplet"], strict=True):
        runs = by_method[method]
        lines = panel.get_lines()  # per run: its curve, then its selected epoch
        assert len(lines) == 2 * len(runs)
        for run, curve, dot in zip(runs, lines[::2], lines[1::2], strict=True):
            assert list(curve.get_ydata()) == run.series("val/map@r")
            assert curve.get_linestyle() == "--"  # every run here stopped at the epoch cap
            assert list(dot.get_xdata()) == [run.selected_epoch]
    # The CSV: one row per run, each metric at the selected epoch (the last here: still rising).
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert len(rows) == 6 and {r["study"] for r in rows} == {"scratch"}
    margin0 = next(r for r in rows if r["method"] == "margin" and r["seed"] == "0")
    assert margin0["selected_epoch"] == "4" and float(margin0["val/map@r"]) == 0.50
    assert float(margin0["test/recall@1"]) == 0.5 and margin0["stop"] == "epoch cap"


def test_a_run_selected_at_its_first_evaluation_is_named(tmp_path: Path) -> None:
    _, scratch_spec = specs(tmp_path)
    partial_scratch_study(scratch_spec)
    assert "Selected at their first evaluation" not in results_page([scratch_spec])
    write_fake_summary(scratch_spec, "softmax", 0, val=[0.5, 0.3, 0.4, 0.45], test=[0.7] * 4,
                       rho2=0.2, pi_ratio=1.0)  # fmt: skip
    page = results_page([scratch_spec])
    assert "Selected at their first evaluation: softmax seed 0. Validation MAP@R never" in page


def test_results_with_no_summaries_say_what_remains(tmp_path: Path) -> None:
    page = results_page(specs(tmp_path / "empty"))
    assert page.count("**0 of 45 runs finished**") == 2
    assert "study run " + FINETUNE.as_posix() in page and "study run " + SCRATCH.as_posix() in page


def test_results_depend_only_on_the_summaries(tmp_path: Path) -> None:
    _, scratch_spec = specs(tmp_path)
    partial_scratch_study(scratch_spec)
    first = results_page([scratch_spec])
    assert results_page([scratch_spec]) == first  # the bootstrap has a fixed seed
    write_fake_summary(scratch_spec, "softmax", 0, val=[0.1, 0.2, 0.3, 0.4], test=[0.1] * 4,
                       rho2=0.2, pi_ratio=1.0)  # fmt: skip
    assert results_page([scratch_spec]) != first


def test_results_refuse_runs_from_different_backbones(tmp_path: Path) -> None:
    finetune_spec, _ = specs(tmp_path)
    for seed, backbone in ((0, "aa" * 32), (1, "bb" * 32)):
        write_fake_summary(finetune_spec, "margin", seed, val=[0.5], test=[0.4], rho2=0.3,
                           pi_ratio=0.5)  # fmt: skip
        path = finetune_spec.summaries_dir / f"margin-seed{seed}.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "pretrained_sha256": backbone}))
    with pytest.raises(StudyError, match="different backbones"):
        load_runs(finetune_spec)
    (finetune_spec.summaries_dir / "margin-seed1.json").unlink()
    assert len(load_runs(finetune_spec)["margin"]) == 1


def test_a_folder_of_two_protocols_or_a_missing_metric_is_one_line(tmp_path: Path) -> None:
    finetune_spec, scratch_spec = specs(tmp_path)
    write_fake_summary(finetune_spec, "margin", 0, val=[0.5], test=[0.4], rho2=0.3, pi_ratio=0.5)
    # The scratch protocol's margin summary in the fine-tune folder: two protocols for margin.
    write_fake_summary(scratch_spec, "margin", 1, val=[0.5], test=[0.4], rho2=0.3, pi_ratio=0.5)
    stray = finetune_spec.summaries_dir / "margin-seed1.json"
    (scratch_spec.summaries_dir / "margin-seed1.json").rename(stray)
    before = {p.name: p.read_bytes() for p in finetune_spec.summaries_dir.iterdir()}
    with pytest.raises(StudyError, match="margin has summaries of two protocols") as raised:
        load_runs(finetune_spec)
    assert "\n" not in str(raised.value)
    stray.unlink()
    load_runs(finetune_spec)
    # One protocol, but not the one the study file now describes.
    write_fake_summary(scratch_spec, "triplet", 0, val=[0.5], test=[0.4], rho2=0.3, pi_ratio=0.5)
    moved = finetune_spec.summaries_dir / "triplet-seed0.json"
    (scratch_spec.summaries_dir / "triplet-seed0.json").rename(moved)
    with pytest.raises(StudyError, match="now describes triplet as protocol"):
        load_runs(finetune_spec)
    moved.unlink()
    # A summary without the target metric, or without the selection metric.
    for metric, message in (
        ("test/recall@1", "has no test/recall@1"),
        ("val/map@r", "has no val/map@r"),
    ):
        path = finetune_spec.summaries_dir / "margin-seed0.json"
        document = json.loads(before["margin-seed0.json"])
        del document["history"][metric]
        path.write_text(json.dumps(document))
        with pytest.raises(StudyError, match=re.escape(message)):
            load_runs(finetune_spec)


NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def numbers(page: str) -> list[str]:
    """Every number of the page outside the lines that name commands, file names or flags."""
    kept = [
        line
        for line in page.splitlines()
        if not re.search(r"`python |studies/|--val-classes|^!\[", line)
    ]
    return NUMBER.findall("\n".join(kept))


def test_the_glyphs_page_regenerates_with_todays_numbers(tmp_path: Path) -> None:
    """``study results`` of the two glyphs study files on the shipped summaries: every number of
    the page written by the former scripts/glyphs_study.py (kept as a fixture) and of the
    committed docs/RESULTS.md, in the same order."""
    page = results_page([load_spec(FINETUNE), load_spec(SCRATCH)])
    before = (ROOT / "tests/fixtures/results-before-study-library.md").read_text()
    assert numbers(page) == numbers(before) and len(numbers(page)) > 1400
    assert numbers((ROOT / "docs/RESULTS-first-study.md").read_text()) == numbers(page)


def test_the_corrected_glyphs_page_is_what_its_summaries_give() -> None:
    """docs/RESULTS.md (the corrected study, runs landing over several sessions) holds exactly the
    numbers ``study results`` computes from the committed summaries: none is typed by hand."""
    corrected = [
        load_spec(ROOT / f"studies/glyphs-{regime}.yaml") for regime in ("finetune", "scratch")
    ]
    page = results_page(corrected)
    assert numbers((ROOT / "docs/RESULTS.md").read_text()) == numbers(page)
    assert "runs finished" in page
