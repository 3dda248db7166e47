"""The app in a real browser: ``streamlit run`` on a free port, driven by Debian's headless Chromium.

``DML_EXPLORER_SCREENSHOT_DIR=docs/screenshots`` also writes the Train page's screenshots there
(``train-1400.png``, ``train-1024.png``); without it they go to the test's temporary folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_support import (
    browser_page,
    needs_chromium,
    screenshot_at_sizes,
    serve_app,
    wait_until_idle,
)

RUN_TIMEOUT_MS = 120_000

pytestmark = [pytest.mark.e2e, needs_chromium]


@pytest.fixture
def app_url(tmp_path: Path) -> Iterator[str]:
    with serve_app(tmp_path) as url:
        yield url


def test_toy_lab_trains_and_draws_in_chromium(app_url: str, tmp_path: Path) -> None:
    with browser_page(tmp_path, 1400, 1100) as page:
        page.goto(app_url, wait_until="domcontentloaded")
        page.get_by_role("heading", name="Toy lab: diagonal lines").wait_for(timeout=60_000)
        page.get_by_role("button", name="Train", exact=True).click()
        page.locator(".js-plotly-plot").filter(has_text="embedding at step").first.wait_for(
            timeout=60_000
        )
        page.get_by_text("Trained base for 200 iterations").wait_for(timeout=60_000)
        page.locator(".js-plotly-plot").filter(has_text="singular values").first.wait_for(
            timeout=30_000
        )
        assert page.locator(".stException").count() == 0
        screenshot = tmp_path / "toy_lab.png"
        page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000


def open_train_page(page, app_url: str) -> None:
    page.goto(f"{app_url}/train", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Train", exact=True).wait_for(timeout=60_000)


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the Streamlit selectbox labelled ``label``."""
    from playwright.sync_api import expect

    box = page.get_by_role("combobox", name=label, exact=True)
    box.click()
    page.get_by_role("option", name=option, exact=True).first.click()
    expect(box).to_have_value(option)
    # The choice reruns the page (a preset rebuilds the form); acting before that run has ended
    # can be undone by it.
    wait_until_idle(page)


def start_run(page, name: str) -> None:
    page.get_by_label("run name (default: generated)").fill(name)
    page.get_by_role("button", name="Start").click()
    page.get_by_text(f"started {name}").wait_for(timeout=60_000)


def overlay_names(page) -> list[str]:
    chips = page.locator('[data-testid="stMultiSelect"]').filter(has_text="runs to overlay")
    return sorted(
        tag.get_attribute("aria-label") for tag in chips.first.locator("[data-tag]").all()
    )


def test_two_runs_started_one_after_the_other_both_appear_live(
    app_url: str, tmp_path: Path
) -> None:
    with browser_page(tmp_path) as page:
        open_train_page(page, app_url)
        choose(page, "preset (sets the defaults below)", "toy")
        start_run(page, "first")
        start_run(page, "second")
        for name in ("first", "second"):
            page.get_by_text(f"{name}: finished").first.wait_for(timeout=RUN_TIMEOUT_MS)
        assert overlay_names(page) == ["first", "second"]
        curves = page.locator(".js-plotly-plot").filter(has_text="Recall@1 (test)").first
        curves.wait_for(timeout=30_000)
        assert curves.locator(".legendtext").all_text_contents() == ["first", "second"]
        assert page.locator(".stException").count() == 0
        screenshot_at_sizes(page, tmp_path, "train", page.get_by_text("runs to overlay").first)


def test_a_run_failing_at_launch_appears_with_its_error(app_url: str, tmp_path: Path) -> None:
    with browser_page(tmp_path) as page:
        open_train_page(page, app_url)
        choose(page, "preset (sets the defaults below)", "toy")
        choose(page, "dataset", "cub200")
        start_run(page, "no-cub")
        alert = page.locator('[data-testid="stAlert"]').filter(has_text="failed at launch")
        alert.wait_for(timeout=RUN_TIMEOUT_MS)
        assert "no-cub" in alert.inner_text()
        assert "error: dataset 'cub200' needs root" in alert.inner_text()
        assert overlay_names(page) == ["no-cub"]
