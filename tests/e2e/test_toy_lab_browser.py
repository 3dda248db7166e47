"""The Toy lab in a real browser (the session's server, ``conftest.py``), Debian's headless Chromium.

Side-by-side modes, the replay's controls (▶ advances the step slider, ❚❚ holds it, a click on
the slider's rail scrubs; switching speed or pausing mid-play raises no page error), the p_ρ
slider disabled while mode rho is off, presentation mode's sizes (headline numbers at 2.6 rem,
the toggle label and every plot title whole at 1024 px, the explanations visible), and
screenshots at 1400×1000 and 1024×768, normal and presentation mode.
``DML_EXPLORER_SCREENSHOT_DIR=docs/screenshots`` writes them there (``toy-lab-<width>.png``,
``toy-lab-words-<width>.png``, ``toy-lab-study-<width>.png``, ``toy-lab-presentation-<width>.png``,
``toy-lab-presentation-words-<width>.png``); otherwise into the test's temporary folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_support import AppUnderTest, screenshot_at_sizes, wait_until_idle

TRAIN_TIMEOUT_MS = 120_000
SLIDER_ACTIVE = "e => e._fullLayout.sliders[0].active"

pytestmark = pytest.mark.e2e


METRIC_VALUE_PX = 2.6 * 16
"""Presentation mode's headline numbers: 2.6 rem."""
SIZES_ON_PAGE = """() => ({
  values: [...document.querySelectorAll('[data-testid="stMetricValue"]')]
    .map(e => parseFloat(getComputedStyle(e.querySelector('p') || e).fontSize)),
  labels: [...document.querySelectorAll('[data-testid="stWidgetLabel"]')]
    .map(e => [e.innerText, e.scrollWidth - e.clientWidth]),
  titles: [...document.querySelectorAll('.js-plotly-plot .gtitle')].map(e => [
    e.textContent,
    e.getBoundingClientRect().right - e.closest('.js-plotly-plot').getBoundingClientRect().right,
  ]),
})"""


def slider_after(plot, milliseconds: int) -> int:
    plot.page.wait_for_timeout(milliseconds)
    return plot.evaluate(SLIDER_ACTIVE)


def test_side_by_side_modes_and_replay_controls(app: AppUnderTest, page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(app.url, wait_until="domcontentloaded")
    page.get_by_role("heading", name="Toy lab: diagonal lines").wait_for(timeout=60_000)
    push = page.locator('[data-testid="stSlider"]').filter(has_text="push probability p_ρ")
    expect(push.locator('input[type="range"]')).to_be_disabled(timeout=30_000)  # no rho
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
    buttons.filter(has_text="▶ ½×").click()  # another speed mid-play interrupts the first
    slider_after(plot, 500)

    buttons.filter(has_text="❚❚").click()
    paused = slider_after(plot, 300)
    assert slider_after(plot, 800) == paused
    assert errors == [], "an interrupted animation raised on the page"

    rail = plot.locator(".slider-rail-rect").bounding_box()
    page.mouse.click(rail["x"] + 2, rail["y"] + rail["height"] / 2)
    assert slider_after(plot, 500) == 0, "a click at the rail's start scrubs to step 0"
    assert "embedding at step 0 of 200" in plot.inner_text()
    page.mouse.click(rail["x"] + rail["width"] - 2, rail["y"] + rail["height"] / 2)
    assert slider_after(plot, 500) == last
    assert page.locator(".stException").count() == 0
    words = page.locator(".st-key-toy-in-words")
    expect(words).to_contain_text("The spectrum of paper is flatter than base's")
    screenshot_at_sizes(page, tmp_path, "toy-lab", plot)
    screenshot_at_sizes(page, tmp_path, "toy-lab-words", page.locator(".st-key-toy-panel-base"))
    study = page.get_by_role("heading", name="Several seeds")
    expect(page.get_by_text("Stored study")).to_contain_text("200 iterations, margin 0.1")
    screenshot_at_sizes(page, tmp_path, "toy-lab-study", study)

    page.get_by_text("presentation mode", exact=True).click()
    page.locator('[data-testid="stSidebar"]').wait_for(state="hidden", timeout=30_000)
    glossary = page.locator(".st-key-toy-glossary")
    expect(glossary).to_contain_text("π_ratio is the spread inside a class", timeout=30_000)
    # the page's own row now (the hidden sidebar's slider may linger in the DOM for a moment)
    on_page = page.get_by_test_id("stMain").locator('[data-testid="stSlider"]')
    expect(on_page.filter(has_text="push probability p_ρ").locator("input")).to_be_disabled()
    wait_until_idle(page)
    heading = page.get_by_role("heading", name="Toy lab: diagonal lines")
    screenshot_at_sizes(page, tmp_path, "toy-lab-presentation", heading)  # ends at 1024 px
    sizes = page.evaluate(SIZES_ON_PAGE)
    assert sizes["values"] and min(sizes["values"]) >= METRIC_VALUE_PX - 0.5, sizes["values"]
    assert [label for label, cut in sizes["labels"] if cut > 0] == [], sizes["labels"]
    assert len(sizes["titles"]) >= 4 and all(over <= 0 for _, over in sizes["titles"]), sizes
    words_anchor = page.locator(".st-key-toy-panel-base")
    screenshot_at_sizes(page, tmp_path, "toy-lab-presentation-words", words_anchor)
    assert errors == []
