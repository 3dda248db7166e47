"""The Study page in Debian's headless Chromium: the glyphs study's claims and the Explain
generalization scatter from the shipped summaries, and a click on a curve of a tiny study trained
here opening that run's checkpoint in Inspect.

``DML_EXPLORER_SCREENSHOT_DIR=docs/screenshots`` writes ``study-{1400,1024}.png`` and
``study-curves-*``, ``study-explain-*`` there (else into the test's temporary folder).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser_support import REPO_ROOT, AppUnderTest, screenshot_at_sizes, wait_until_idle
from playwright.sync_api import expect

GLYPHS_STUDY = "studies/first/glyphs-finetune.yaml"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (REPO_ROOT / "docs" / "study" / "finetune").is_dir(),
        reason="needs the shipped glyphs study summaries",
    ),
]


def plot_drawn(page, title_part: str, timeout_ms: int = 60_000) -> None:
    """Wait until a plotly chart whose text contains ``title_part`` has drawn points."""
    page.wait_for_function(
        """part => [...document.querySelectorAll('.js-plotly-plot')].some(
            p => p.textContent.includes(part) && p.querySelector('.scatterlayer .point'))""",
        arg=title_part,
        timeout=timeout_ms,
    )


def test_the_glyphs_study_shows_its_claims_and_the_explain_scatter(
    app: AppUnderTest, page, tmp_path: Path
) -> None:
    url = f"{app.url}/study?source={GLYPHS_STUDY}"
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_role("heading", name="Study finetune").wait_for(timeout=90_000)
    plot_drawn(page, "over method means")
    wait_until_idle(page)
    # Warm: the same study again in a fresh load of the page (the server's cache is filled).
    started = time.monotonic()
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_text("Claim 3").wait_for(timeout=60_000)
    plot_drawn(page, "over method means")
    print(f"warm open of the glyphs study: {time.monotonic() - started:.2f} s")  # not asserted
    # The page streams in: the Explain section's last parts may land after the scatter.
    page.get_by_text("Leave one method out").wait_for(timeout=30_000)
    page.get_by_text("The paper's CUB200 value -0.80 lies").wait_for(timeout=30_000)
    assert page.locator(".stException").count() == 0
    for claim in ("Claim 1", "Claim 2", "Claim 3"):
        assert page.get_by_text(claim).count() >= 1
    assert page.get_by_text("45 of 45 runs finished").count() == 1
    assert page.get_by_text("Leave one method out").count() == 1
    # The paper's CUB200 value for the default metric (train ρ@2) is set beside the interval.
    assert page.get_by_text("The paper's CUB200 value -0.80 lies").count() == 1
    table = page.locator('[data-testid="stDataFrame"]').first
    table.wait_for(timeout=30_000)
    screenshot_at_sizes(page, tmp_path, "study", page.get_by_role("heading", name="Study finetune"))
    screenshot_at_sizes(
        page, tmp_path, "study-curves", page.get_by_role("heading", name="Every run")
    )
    screenshot_at_sizes(
        page, tmp_path, "study-explain", page.get_by_role("heading", name="Explain generalization")
    )


def tiny_study(folder: Path) -> Path:
    """studies/toy.yaml cut to one seed and two epochs, its runs and summaries beside it."""
    text = (REPO_ROOT / "studies" / "toy.yaml").read_text()
    text = text.replace("seeds: [0, 1]", "seeds: [0]").replace("epochs: 4", "epochs: 2")
    text = text.replace("stopping: {min_epochs: 2", "stopping: {min_epochs: 1")
    text = text.replace("  runs: ../runs/study/toy", "  runs: runs\n  summaries: summaries")
    folder.mkdir(parents=True)
    study = folder / "tiny.yaml"
    study.write_text(text)
    subprocess.run(
        [sys.executable, "-m", "dml_core", "study", "run", str(study)],
        cwd=REPO_ROOT,
        check=True,
        timeout=600,
        capture_output=True,
    )
    return study


def test_a_click_on_a_curve_opens_the_run_in_inspect(app: AppUnderTest, page) -> None:
    study = tiny_study(app.runs / "study-e2e")
    checkpoints = sorted((study.parent / "runs").glob("*/best.safetensors"))
    assert len(checkpoints) == 2
    page.goto(f"{app.url}/study?source=runs/study-e2e/tiny.yaml", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Study toy").wait_for(timeout=90_000)
    plot_drawn(page, "per evaluation")
    wait_until_idle(page)
    chart = page.locator(".js-plotly-plot").filter(has_text="per evaluation").first
    chart.scroll_into_view_if_needed()
    wait_until_idle(page)
    box = chart.locator(".scatterlayer .trace .point").nth(1).bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.wait_for_timeout(500)
    page.mouse.click(x, y)
    page.get_by_role("heading", name="Inspect best.safetensors").wait_for(timeout=90_000)
    field = page.get_by_label("…or a path (under the allowed folders)", exact=True)
    expect(field).not_to_have_value("", timeout=60_000)  # the page fills it as it opens
    opened = field.input_value()
    assert Path(opened).name == "best.safetensors"
    assert Path(opened).resolve().parent.parent == (study.parent / "runs").resolve()
    assert page.locator(".stException").count() == 0
