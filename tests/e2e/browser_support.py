"""What every browser test imports: Debian's headless Chromium, a real ``streamlit run`` of the app on a
free port, and waits that follow the app's own state instead of fixed sleeps. ``conftest.py`` starts
one server and one browser for the session (``README.md`` beside this file says how a test uses
them).

The app runs with its settings pointed into a temporary folder (runs, projection cache, checkpoint
folders), so the tests never touch ``runs/`` or the user's cache.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from app.server import running_app

CHROMIUM = Path("/usr/bin/chromium")
REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SIZES = ((1400, 1000), (1024, 768))
"""The two window sizes every changed page is looked at in."""
START_TIMEOUT = 90
RUNNING_ICON = '[data-testid="stStatusWidgetRunningIcon"]'
"""Shown in the app's header while a script run is in progress."""


@dataclass(frozen=True)
class AppUnderTest:
    """The session's server: its URL and the folders it reads."""

    url: str
    scratch: Path
    runs: Path
    files: Path

    def files_for(self, name: str) -> Path:
        """A fresh sub-folder of :attr:`files` for one test module's files."""
        folder = self.files / name
        folder.mkdir(parents=True)
        return folder


@contextmanager
def serve_app(scratch: Path, **settings: str) -> Iterator[str]:
    """``streamlit run app/main.py`` on a free port of 127.0.0.1 (:func:`app.server.running_app`);
    yields its URL.

    UMAP is off, runs and the projection cache live under ``scratch`` unless ``settings`` (app
    environment variables) say otherwise; the server's output goes to ``scratch/streamlit.log``.
    The browser tests share one such server (the ``app`` fixture of ``conftest.py``).
    """
    scratch.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DML_EXPLORER_UMAP": "off",
        "DML_EXPLORER_RUNS_DIR": str(scratch / "runs"),
        "DML_EXPLORER_PROJECTION_CACHE": str(scratch / "projections"),
        **settings,
    }
    log = scratch / "streamlit.log"
    # The app writes nothing on its way out: 2 s to stop, then killed (not Python's slow shutdown).
    with running_app(
        cwd=REPO_ROOT, env=env, log=log, timeout=START_TIMEOUT, stop_grace=2
    ) as running:
        yield running.url


def wait_until_idle(page, timeout_ms: int = 90_000, quiet_ms: int = 1_500) -> None:
    """Wait until no script run has been in progress for ``quiet_ms`` (a click made while a run
    is streaming its elements can be lost when the run re-renders them)."""
    deadline = time.monotonic() + timeout_ms / 1000
    quiet_since = None
    while time.monotonic() < deadline:
        if page.locator(RUNNING_ICON).count():
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_ms / 1000:
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"the app was still running after {timeout_ms / 1000:.0f} s")


def open_compare(page, url: str, names, timeout_ms: int = 90_000) -> None:
    """Compare with exactly ``names`` chosen (the page's default choice removed first)."""
    page.goto(f"{url}/compare", wait_until="domcontentloaded")
    picker = page.locator('[data-testid="stMultiSelect"] input').first
    picker.wait_for(timeout=timeout_ms)
    picker.click()
    for _ in range(8):  # the default chips, one Backspace each
        picker.press("Backspace")
    for name in names:
        picker.fill(name)
        page.get_by_role("option", name=name).click()
    picker.press("Escape")


def open_tab(page, name: str, content, timeout_ms: int = 90_000) -> None:
    """Select the tab ``name`` and wait for ``content`` (a locator) inside it to be visible; the
    click is repeated if a rerun of the page put the first tab back."""
    deadline = time.monotonic() + timeout_ms / 1000
    tab = page.get_by_role("tab", name=name)
    while True:
        wait_until_idle(page, timeout_ms=max(1, int((deadline - time.monotonic()) * 1000)))
        tab.click()
        try:
            content.first.wait_for(timeout=10_000)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise


def screenshot_folder(tmp_path: Path) -> Path:
    """``DML_EXPLORER_SCREENSHOT_DIR`` (e.g. docs/screenshots) if set, else the test's folder."""
    folder = Path(os.environ.get("DML_EXPLORER_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


SCROLL_BELOW_HEADER = """e => {
  e.scrollIntoView({block: 'start'});
  let box = e.parentElement;
  while (box && !(['auto', 'scroll'].includes(getComputedStyle(box).overflowY)
                  && box.scrollHeight > box.clientHeight)) box = box.parentElement;
  (box || window).scrollBy(0, -70);
}"""
"""Scrolls an element to the top of the view, below Streamlit's header."""


def screenshot_at_sizes(page, tmp_path: Path, name: str, anchor, sizes=SIZES) -> None:
    """``<name>-<width>.png`` in :func:`screenshot_folder` at each window size, with ``anchor`` (a
    locator) at the top of the view, once plotly has laid the page out for the new width."""
    folder = screenshot_folder(tmp_path)
    for width, height in sizes:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(2000)  # plotly relayouts to the new width
        anchor.evaluate(SCROLL_BELOW_HEADER)
        page.wait_for_timeout(500)
        path = folder / f"{name}-{width}.png"
        page.screenshot(path=str(path))
        assert path.stat().st_size > 10_000, path


def save_failure(page, folder: Path) -> None:
    """The page's screenshot and text as ``failure.png`` / ``failure.txt`` in ``folder``."""
    try:
        page.screenshot(path=str(folder / "failure.png"), full_page=True)
        (folder / "failure.txt").write_text(page.locator("body").inner_text(timeout=5_000))
    except Exception:  # the page may be gone; the original error matters more
        pass
