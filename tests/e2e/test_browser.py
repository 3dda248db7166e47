"""The app in a real browser: the session's ``streamlit run`` (``conftest.py``), driven by Debian's
headless Chromium. The Toy lab shows the metrics of the run Python records with the same settings;
the Train page runs two trainings at once and shows a run that failed at launch with its error.

``DML_EXPLORER_SCREENSHOT_DIR=docs/screenshots`` also writes the Train page's screenshots there
(``train-1400.png``, ``train-1024.png``); without it they go to the test's temporary folder.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser_support import AppUnderTest, screenshot_at_sizes, wait_until_idle

RUN_TIMEOUT_MS = 120_000
PANEL_METRICS = {"test Recall@1": "test_recall@1", "ρ@1 (lower = flatter)": "rho@1",
                 "π_ratio": "pi_ratio"}  # fmt: skip
"""The Toy lab's per-mode panel: shown label → key of ``ToyResult.metrics``."""

pytestmark = pytest.mark.e2e


def shown_metrics(panel) -> dict[str, str]:
    """``label → value`` of the ``st.metric`` boxes inside ``panel`` (a locator)."""
    shown = {}
    for box in panel.locator('[data-testid="stMetric"]').all():
        label = box.locator('[data-testid="stMetricLabel"]').inner_text().strip()
        shown[label] = box.locator('[data-testid="stMetricValue"]').inner_text().strip()
    return shown


def test_toy_lab_trains_and_shows_the_metrics_python_records(app: AppUnderTest, page) -> None:
    from toy import ToySettings, record_toy

    page.set_viewport_size({"width": 1400, "height": 1100})
    page.goto(app.url, wait_until="domcontentloaded")
    page.get_by_role("heading", name="Toy lab: diagonal lines").wait_for(timeout=60_000)
    page.get_by_role("button", name="Train", exact=True).click()
    plot = page.locator(".js-plotly-plot").filter(has_text="embedding at step").first
    plot.wait_for(timeout=60_000)
    page.get_by_text("Trained base for 200 iterations").wait_for(timeout=60_000)
    spectrum = page.locator(".js-plotly-plot").filter(has_text="singular values").first
    spectrum.wait_for(timeout=30_000)
    assert re.search(r"embedding at step 200 of 200", plot.inner_text())
    page.get_by_role("heading", name="Several seeds").wait_for(timeout=30_000)
    assert page.locator(".stException").count() == 0
    # The page's defaults are ToySettings' (mode base, seed 0, 200 iterations): the same run,
    # recorded here, must give the numbers the page shows, to the digits it shows.
    panel = page.locator(".st-key-toy-panel-base")
    panel.locator('[data-testid="stMetric"]').nth(len(PANEL_METRICS) - 1).wait_for(timeout=30_000)
    wait_until_idle(page)
    expected = record_toy(ToySettings()).result.metrics
    shown = shown_metrics(panel)
    assert set(shown) == set(PANEL_METRICS), shown
    for label, key in PANEL_METRICS.items():
        digits = len(shown[label].split(".")[1])
        assert abs(float(shown[label]) - expected[key]) <= 0.5 * 10**-digits + 1e-9, (
            label,
            shown[label],
            expected[key],
        )


def open_train_page(page, url: str) -> None:
    page.goto(f"{url}/train", wait_until="domcontentloaded")
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


def overlay_on_arrival(page) -> list[str]:
    """The overlay a fresh visit shows (other tests' runs share the session's runs folder)."""
    chips = page.locator('[data-testid="stMultiSelect"]').filter(has_text="runs to overlay")
    chips.or_(page.get_by_text("No runs yet in")).first.wait_for(timeout=60_000)
    wait_until_idle(page)
    return overlay_names(page)


def test_two_runs_started_one_after_the_other_both_appear_live(
    app: AppUnderTest, page, tmp_path: Path
) -> None:
    open_train_page(page, app.url)
    before = overlay_on_arrival(page)
    choose(page, "preset (sets the defaults below)", "toy")
    start_run(page, "first")
    start_run(page, "second")
    for name in ("first", "second"):
        page.get_by_text(f"{name}: finished").first.wait_for(timeout=RUN_TIMEOUT_MS)
    assert overlay_names(page) == sorted({*before, "first", "second"})
    curves = page.locator(".js-plotly-plot").filter(has_text="Recall@1 (test)").first
    curves.wait_for(timeout=30_000)
    legend = curves.locator(".legendtext").all_text_contents()
    assert [name for name in legend if name not in before] == ["first", "second"], legend
    assert page.locator(".stException").count() == 0
    screenshot_at_sizes(page, tmp_path, "train", page.get_by_text("runs to overlay").first)


def test_a_run_failing_at_launch_appears_with_its_error(app: AppUnderTest, page) -> None:
    """A run started elsewhere whose process died before its first event (the page itself refuses
    a missing dataset before launching: test_train_feedback.py) joins with its error line."""
    from app import runs

    open_train_page(page, app.url)
    before = overlay_on_arrival(page)
    run_dir = app.runs / "no-cub"
    run_dir.mkdir(parents=True)
    (run_dir / runs.LOG_FILE).write_text("error: dataset 'cub200' needs root=<folder>\n")
    (run_dir / runs.PID_FILE).write_text('{"pid": 999999999}')  # no such process
    page.get_by_role("button", name="Refresh").click()
    alert = page.locator('[data-testid="stAlert"]').filter(has_text="failed at launch")
    alert.wait_for(timeout=RUN_TIMEOUT_MS)
    assert "no-cub" in alert.inner_text()
    assert "error: dataset 'cub200' needs root" in alert.inner_text()
    wait_until_idle(page)  # the overlay is drawn below the alert, later in the same script run
    assert overlay_names(page) == sorted({*before, "no-cub"})
