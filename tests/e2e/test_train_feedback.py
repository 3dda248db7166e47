"""The Train page says what is happening: a Stop reads "stopping…" from the click until the run's
done event, a data root that holds no dataset is one red line before anything is launched, the
captions name the runs folder the server uses, and Streamlit's developer chrome (Deploy, the
developer menu) is not shown.

With ``DML_EXPLORER_SCREENSHOT_DIR=docs/screenshots`` the refused start is written there as
``train-not-started-1400.png`` and ``-1024.png``."""

from __future__ import annotations

import re
import time

import pytest
from browser_support import AppUnderTest, screenshot_at_sizes, wait_until_idle
from test_browser import choose, open_train_page

from app import runs

pytestmark = pytest.mark.e2e

STOP_TIMEOUT_S = 120


def status_text(page, name: str) -> str:
    """The run's status line (``name: **status** · …``), "" while it is not drawn."""
    line = page.locator('[data-testid="stMarkdownContainer"]').filter(
        has_text=re.compile(rf"^{re.escape(name)}: ")
    )
    try:
        return line.first.inner_text(timeout=500)
    except Exception:  # redrawn by the live refresh between locating and reading it
        return ""


def test_a_stopped_run_reads_stopping_until_it_has_stopped(app: AppUnderTest, page) -> None:
    name = f"stop-{time.monotonic_ns()}"
    try:
        seen = _start_stop_and_watch(app, page, name)
    finally:
        runs.stop_run(app.runs / name)  # a failed test leaves no run going (no-op once ended)
    statuses = [line.split(": ", 1)[1].split(" (")[0] for line in seen]
    if statuses[:1] == ["running"]:  # the line drawn before the click, until its rerun replaced it
        statuses, seen = statuses[1:], seen[1:]
    assert statuses and statuses[0] == "stopping…", seen
    assert statuses[-1] == "stopped" and set(statuses) <= {"stopping…", "stopped"}, seen
    assert "then writing last" in seen[0], seen
    assert page.locator(f".st-key-stop-{name}").get_by_role("button").count() == 0
    assert (app.runs / name / "last.safetensors").exists()


def _start_stop_and_watch(app: AppUnderTest, page, name: str) -> list[str]:
    """Start a long toy run, click its Stop once it runs, and return each status it then shows
    (``name: status (…)``, each change once) until it reads "stopped"."""
    open_train_page(page, app.url)
    choose(page, "preset (sets the defaults below)", "toy")
    page.get_by_label("epochs", exact=True).fill("500")  # minutes here: stopped long before
    page.get_by_label("run name (default: generated)").fill(name)
    page.get_by_role("button", name="Start").click()
    page.get_by_text(f"started {name}").wait_for(timeout=60_000)
    training = re.compile(rf"^{re.escape(name)}: running · epoch")  # past its start: it trains
    page.get_by_text(training).first.wait_for(timeout=90_000)
    # While the page refreshes live, Streamlit's own Stop never shows in the header (it flashed
    # at each refresh), though its running icon does.
    for _ in range(30):
        assert page.locator('[data-testid="stStatusWidget"] button:visible').count() == 0
        page.wait_for_timeout(100)
    # This run's Stop (other tests' runs may be going too).
    page.locator(f".st-key-stop-{name}").get_by_role("button", name="Stop").first.click()
    seen: list[str] = []
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        status = status_text(page, name).split(" · ")[0]
        if status and (not seen or seen[-1] != status):
            seen.append(status)
        if status and not status.startswith((f"{name}: running", f"{name}: stopping…")):
            break  # stopped (or anything else: the test says what it saw)
        page.wait_for_timeout(100)
    return seen


def test_a_bad_data_root_is_one_red_line_and_nothing_starts(
    app: AppUnderTest, page, tmp_path
) -> None:
    name = f"bad-root-{time.monotonic_ns()}"
    missing = tmp_path / "no-cub-here"
    open_train_page(page, app.url)
    choose(page, "preset (sets the defaults below)", "toy")
    choose(page, "dataset", "cub200")
    page.get_by_label("data root (cub200 / cars196 / sop / imagefolder)").fill(str(missing))
    page.get_by_label("run name (default: generated)").fill(name)
    page.get_by_role("button", name="Start").click()
    alert = page.locator('[data-testid="stAlert"]').filter(has_text="Not started")
    alert.wait_for(timeout=60_000)
    wait_until_idle(page)
    assert alert.count() == 1
    text = alert.inner_text().strip()
    assert "\n" not in text and str(missing) in text and "does not exist" in text, text
    red, green, _ = map(
        float,
        re.findall(
            r"[\d.]+",
            alert.locator('[data-testid="stAlertContainer"]').evaluate(
                "e => getComputedStyle(e).color"
            ),
        )[:3],
    )
    assert red > 1.5 * green, (red, green)  # the error colour, not the success green
    assert page.get_by_text(f"started {name}").count() == 0
    assert not (app.runs / name).exists()
    screenshot_at_sizes(page, tmp_path, "train-not-started", page.get_by_text("run name").first)


def test_captions_name_the_runs_folder_and_no_developer_chrome_is_shown(
    app: AppUnderTest, page
) -> None:
    open_train_page(page, app.url)
    wait_until_idle(page)
    caption = page.get_by_text("in the background, writing to").first.inner_text()
    assert f"{app.runs.resolve()}/<name>/" in caption, caption
    assert "runs/<name>" not in caption.replace(f"{app.runs.resolve()}/<name>", "")
    assert page.locator('[data-testid="stAppDeployButton"]').count() == 0
    assert page.get_by_role("button", name="Deploy").count() == 0
    # The menu keeps the viewer's entries (theme, Print, Record screen) and no developer's.
    page.get_by_role("button", name="Main menu").click()
    page.get_by_text("Print", exact=True).wait_for(timeout=10_000)
    for developer_entry in ("Clear cache", "Rerun", "Deploy", "Developer options"):
        assert page.get_by_text(developer_entry, exact=True).count() == 0, developer_entry
