"""The Toy lab in a real browser (the session's server, ``conftest.py``), Debian's headless Chromium.

Side-by-side modes, the replay's controls (▶ advances the step slider, ❚❚ holds it, a click on
the slider's rail scrubs), and screenshots at 1400×1000 and 1024×768, normal and presentation
mode. ``DML_EXPLORER_SCREENSHOT_DIR=docs/screenshots`` writes them there (``toy-lab-1400.png``,
``toy-lab-1024.png``, ``toy-lab-presentation-1024.png``); otherwise into the test's temporary
folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_support import AppUnderTest, screenshot_at_sizes

TRAIN_TIMEOUT_MS = 120_000
SLIDER_ACTIVE = "e => e._fullLayout.sliders[0].active"

pytestmark = pytest.mark.e2e


def slider_after(plot, milliseconds: int) -> int:
    plot.page.wait_for_timeout(milliseconds)
    return plot.evaluate(SLIDER_ACTIVE)


def test_side_by_side_modes_and_replay_controls(app: AppUnderTest, page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page.goto(app.url, wait_until="domcontentloaded")
    page.get_by_role("heading", name="Toy lab: diagonal lines").wait_for(timeout=60_000)
    page.get_by_role("button", name="Train side by side").click()
    page.get_by_text("Trained base, paper for 200 iterations").wait_for(timeout=TRAIN_TIMEOUT_MS)
    for mode in ("base", "paper"):
        panel = page.locator(f".st-key-toy-panel-{mode}")
        for text in ("test Recall@1", "ρ@1 (lower = flatter)", "π_ratio"):
            expect(panel).to_contain_text(text, timeout=30_000)
    expect(page.locator(".st-key-toy-panel-paper")).to_contain_text("vs base")
    expect(page.locator(".st-key-toy-panel-base")).not_to_contain_text("vs base")
    plot = page.locator(".js-plotly-plot").filter(has_text="embedding at step").first
    plot.wait_for(timeout=30_000)
    assert "singular values" in plot.inner_text()
    buttons = plot.locator(".updatemenu-button")
    assert buttons.all_text_contents() == ["▶ ¼×", "▶ ½×", "▶ 1×", "▶ 2×", "❚❚"]
    last = plot.evaluate("e => e._fullLayout.sliders[0].steps.length - 1")
    assert last >= 20 and plot.evaluate(SLIDER_ACTIVE) == last

    buttons.filter(has_text="▶ 1×").click()  # at the end: replays from step 0
    before = slider_after(plot, 100)
    for _ in range(100):  # wait until the replay has restarted
        if before < last - 2:
            break
        before = slider_after(plot, 100)
    after = slider_after(plot, 800)
    assert after > before, (before, after)

    buttons.filter(has_text="❚❚").click()
    paused = slider_after(plot, 300)
    assert slider_after(plot, 800) == paused

    rail = plot.locator(".slider-rail-rect").bounding_box()
    page.mouse.click(rail["x"] + 2, rail["y"] + rail["height"] / 2)
    assert slider_after(plot, 500) == 0, "a click at the rail's start scrubs to step 0"
    assert "embedding at step 0 of 200" in plot.inner_text()
    page.mouse.click(rail["x"] + rail["width"] - 2, rail["y"] + rail["height"] / 2)
    assert slider_after(plot, 500) == last
    assert page.locator(".stException").count() == 0
    save_screenshots(page, tmp_path)


def save_screenshots(page, tmp_path: Path) -> None:
    """The replay at 1400×1000 and 1024×768, then in presentation mode at 1024×768."""
    plot = page.locator(".js-plotly-plot").filter(has_text="embedding at step").first
    screenshot_at_sizes(page, tmp_path, "toy-lab", plot)
    page.get_by_text("presentation mode", exact=True).click()
    page.locator('[data-testid="stSidebar"]').wait_for(state="hidden", timeout=30_000)
    screenshot_at_sizes(page, tmp_path, "toy-lab-presentation", plot, sizes=((1024, 768),))
