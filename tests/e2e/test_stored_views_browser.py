"""Inspect and Compare on the shipped checkpoints in Debian's headless Chromium: the projections come
from the evaluation the checkpoints carry (Inspect) and from one aligned fit (Compare).

``DML_EXPLORER_SCREENSHOT_DIR=docs/screenshots`` writes ``inspect-{1400,1024}.png`` and
``compare-{1400,1024}.png`` there (else into the test's temporary folder).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("glyphs-margin.safetensors", "glyphs-margin-rho0.1.safetensors")
SIZES = ((1400, 1000), (1024, 768))

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"
    ),
    pytest.mark.skipif(
        not all((REPO_ROOT / "checkpoints" / name).exists() for name in SHIPPED),
        reason="needs the shipped glyphs checkpoints",
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with an empty app cache and UMAP on; nothing but ``checkpoints/`` to open."""
    scratch = tmp_path_factory.mktemp("stored-views-server")
    port = free_port()
    env = {
        **os.environ,
        "DML_EXPLORER_UMAP": "on",
        "DML_EXPLORER_RUNS_DIR": str(scratch / "runs"),
        "DML_EXPLORER_PROJECTION_CACHE": str(scratch / "projections"),
    }
    command = [
        sys.executable, "-m", "streamlit", "run", "app/main.py",
        "--server.port", str(port), "--server.headless", "true",
        "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    log = open(scratch / "streamlit.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, "streamlit exited"
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read().strip() == b"ok":
                        break
            except OSError:
                assert time.monotonic() < deadline, "streamlit did not start"
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def projections_drawn(page, title_part: str, count: int, timeout_ms: int = 120_000) -> None:
    """Wait until ``count`` plotly charts whose title contains ``title_part`` have drawn points."""
    page.wait_for_function(
        """([part, count]) => [...document.querySelectorAll('.js-plotly-plot')].filter(
            p => (p.querySelector('.gtitle')?.textContent || '').includes(part)
                 && p.querySelector('.scatterlayer .point, canvas')).length >= count""",
        arg=[title_part, count],
        timeout=timeout_ms,
    )


def screenshots(page, name: str, tmp_path: Path, anchor: str) -> None:
    folder = Path(os.environ.get("DML_EXPLORER_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(1500)  # plotly relayouts to the new width
        page.get_by_text(anchor).first.evaluate("e => e.scrollIntoView()")
        path = folder / f"{name}-{width}.png"
        page.screenshot(path=str(path))
        assert path.stat().st_size > 10_000


def test_inspect_and_compare_show_the_shipped_checkpoints(app_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{app_url}/inspect", wait_until="domcontentloaded")
            page.get_by_role("heading", name="Inspect a checkpoint").wait_for(timeout=60_000)
            # The stored UMAP of a shipped checkpoint: nothing is embedded or fitted.
            projections_drawn(page, "UMAP · 4000 test items", 1)
            assert page.get_by_text("Evaluated here once").count() == 0
            assert page.locator(".stException").count() == 0
            screenshots(page, "inspect", tmp_path, "Projection of the test split")

            page.goto(f"{app_url}/compare", wait_until="domcontentloaded")
            page.get_by_role("heading", name="Compare checkpoints").wait_for(timeout=60_000)
            projections_drawn(page, "from #1's layout", 2)
            assert page.locator(".stException").count() == 0
            screenshots(page, "compare", tmp_path, "Projections (test)")
        finally:
            browser.close()
