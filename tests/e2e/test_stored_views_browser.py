"""Inspect and Compare on the shipped checkpoints in Debian's headless Chromium: the projections come
from the evaluation the checkpoints carry (Inspect) and from one aligned fit (Compare).

``DML_EXPLORER_SCREENSHOT_DIR=docs/screenshots`` writes ``inspect-{1400,1024}.png`` and
``compare-{1400,1024}.png`` there (else into the test's temporary folder).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_support import REPO_ROOT, AppUnderTest, screenshot_at_sizes

SHIPPED = (
    "glyphs-finetune-margin-base.safetensors",
    "glyphs-finetune-margin-rho0.35.safetensors",
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not all((REPO_ROOT / "checkpoints" / name).exists() for name in SHIPPED),
        reason="needs the shipped glyphs checkpoints",
    ),
]


def projections_drawn(page, title_part: str, count: int, timeout_ms: int = 120_000) -> None:
    """Wait until ``count`` plotly charts whose title contains ``title_part`` have drawn points."""
    page.wait_for_function(
        """([part, count]) => [...document.querySelectorAll('.js-plotly-plot')].filter(
            p => (p.querySelector('.gtitle')?.textContent || '').includes(part)
                 && p.querySelector('.scatterlayer .point, canvas')).length >= count""",
        arg=[title_part, count],
        timeout=timeout_ms,
    )


def test_inspect_and_compare_show_the_shipped_checkpoints(
    app: AppUnderTest, page, tmp_path: Path
) -> None:
    """The session's server (UMAP on): the shipped checkpoints sort first in both pages' pickers
    (``checkpoints/…`` before the ``files/…`` and ``runs/…`` other tests add)."""
    app_url = app.url
    page.goto(f"{app_url}/inspect", wait_until="domcontentloaded")
    page.get_by_role("heading", name=f"Inspect {SHIPPED[0]}").wait_for(timeout=60_000)
    # The stored UMAP of a shipped checkpoint: nothing is embedded or fitted.
    projections_drawn(page, "UMAP · 4000 test items", 1)
    assert page.get_by_text("Evaluated here once").count() == 0
    assert page.locator(".stException").count() == 0
    anchor = page.get_by_text("Projection of the test split").first
    screenshot_at_sizes(page, tmp_path, "inspect", anchor)

    page.goto(f"{app_url}/compare", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Compare", exact=True).wait_for(timeout=60_000)
    projections_drawn(page, "from #1's layout", 2)
    assert page.locator(".stException").count() == 0
    frames = page.locator(".js-plotly-plot").filter(has_text="from #1's layout")
    axis_ranges = "e => [e._fullLayout.xaxis.range, e._fullLayout.yaxis.range]"
    before = [frames.nth(i).evaluate(axis_ranges) for i in range(2)]
    anchor = page.get_by_text("Projections", exact=True).first
    screenshot_at_sizes(page, tmp_path, "compare", anchor)
    # The aligned projections share one frame, and resizing the window does not zoom out.
    assert before[0] == before[1]
    assert [frames.nth(i).evaluate(axis_ranges) for i in range(2)] == before
