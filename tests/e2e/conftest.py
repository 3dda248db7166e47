"""One app server and one browser per pytest session, or per xdist worker (see ``README.md`` here).

Starting ``streamlit run`` costs seconds of import and the first page run more; every browser test
used to pay both. Now the ``app`` fixture starts one server for the session and the ``browser``
fixture one headless Chromium; each test gets a fresh ``page`` in its own browser context, which
is a new Streamlit session (no ``st.session_state`` carried over), and navigates by URL.

What the tests share is the server's folders: runs started from the Train page land in
``app.runs``, and files a test writes for the app to open go in its own sub-folder of
``app.files`` (an allowed checkpoint folder, labelled ``files/…`` in the app's pickers). Tests must
not assume those folders are empty. UMAP is on, as for a user.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, AppUnderTest, save_failure, serve_app


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keeps each phase's report on the item, so the ``page`` fixture knows whether the test
    failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppUnderTest]:
    """``streamlit run app/main.py`` for the whole session, UMAP on, its runs, projection cache
    and extra checkpoint folder (``files``) in a session folder."""
    if not CHROMIUM.exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    scratch = tmp_path_factory.mktemp("app-server")
    files = scratch / "files"
    files.mkdir()
    settings = {
        "DML_EXPLORER_UMAP": "on",
        "DML_EXPLORER_CHECKPOINT_DIRS": str(files),
        # tests/conftest.py sets it per test, after a session fixture has started.
        "DML_EXPLORER_CACHE": str(tmp_path_factory.getbasetemp() / "cache"),
    }
    with serve_app(scratch, **settings) as url:
        yield AppUnderTest(url, scratch, scratch / "runs", files)


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """One headless Chromium (Debian's) for the session."""
    if not CHROMIUM.exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator:
    """A page at 1400 × 1000 in a fresh browser context (a new Streamlit session). When the test
    fails, its screenshot and text are kept as ``failure.png`` / ``failure.txt`` in the test's
    temporary folder (what a failed CI run leaves to look at)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    try:
        yield opened
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            save_failure(opened, tmp_path)
    finally:
        context.close()
