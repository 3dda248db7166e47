"""A many-class embedding file in a real browser (issue 30 item 1, issue 28 item 2): 6,000 items in
2,000 classes with its projection and evaluation stored by ``project`` (``<file>.projection.npz``)
opens in Inspect as ONE WebGL scatter trace with no legend (class names on hover and in the
filter); a click lists the point's neighbours; Compare's linked selection highlights one item as a
star in both projections and says "1 item". ``DML_EXPLORER_SCREENSHOT_DIR=docs/screenshots`` keeps
``inspect-scale-{1400,1024}.png`` there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from browser_support import AppUnderTest, open_compare, screenshot_at_sizes, wait_until_idle

from dml_core.interop.projection_file import store_file_projection

pytestmark = pytest.mark.e2e

ITEMS, CLASSES, DIM = 6_000, 2_000, 32
TIMEOUT_MS = 180_000
FOLDER = "scale"
# gd._fullData: the traces as drawn (plotly >= 6 sends numpy arrays base64-encoded in gd.data).
PLOT_TRACES = """(gd) => ({
  withPoints: gd._fullData
    .filter(t => t.x && t.x.length && t.x[0] !== null && !Number.isNaN(t.x[0]))
    .map(t => [t.type, t.name]),
  legendItems: gd.querySelectorAll('.legend .traces').length,
})"""
FIRST_POINT = """(gd) => {
  const trace = gd._fullData[0];
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, size = gd._fullLayout._size;
  return {x: size.l + xa.l2p(trace.x[0]), y: size.t + ya.l2p(trace.y[0])};
}"""


@pytest.fixture(scope="module")
def files(app: AppUnderTest) -> Path:
    folder = app.files_for(FOLDER)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, CLASSES, size=ITEMS)
    centres = rng.normal(size=(CLASSES, DIM)).astype(np.float32)
    names = np.array([f"product {c:04d}" for c in range(CLASSES)])
    for name, spread in (("big_a", 0.5), ("big_b", 0.7)):
        embeddings = centres[labels] + spread * rng.normal(size=(ITEMS, DIM)).astype(np.float32)
        path = folder / f"{name}.npz"
        np.savez(path, embeddings=embeddings, labels=labels, class_names=names)
        store_file_projection(path, umap=None)  # PCA and the evaluation: no UMAP fit in the test
    return folder


def _click_first_point(page, plot) -> None:
    plot.scroll_into_view_if_needed()
    point = plot.evaluate(FIRST_POINT)
    box = plot.bounding_box()
    page.mouse.move(box["x"] + point["x"], box["y"] + point["y"])
    page.wait_for_timeout(300)
    page.mouse.click(box["x"] + point["x"], box["y"] + point["y"])


def test_a_many_class_file_is_one_trace_and_answers_clicks(
    app: AppUnderTest, files: Path, page, tmp_path: Path
) -> None:
    page.goto(f"{app.url}/inspect", wait_until="domcontentloaded")
    field = page.get_by_label("…or a path (under the allowed folders)", exact=True)
    field.wait_for(timeout=TIMEOUT_MS)
    field.fill(str(files / "big_a.npz"))
    field.press("Enter")
    plot = page.locator(".js-plotly-plot").filter(has_text=f"PCA · {ITEMS} test items").first
    plot.wait_for(timeout=TIMEOUT_MS)
    wait_until_idle(page, TIMEOUT_MS)
    traces = plot.evaluate(PLOT_TRACES)
    assert traces == {"withPoints": [["scattergl", "classes"]], "legendItems": 0}
    present = len(np.unique(np.load(files / "big_a.npz")["labels"]))  # of the CLASSES named
    assert page.get_by_text(f"{present} classes").first.is_visible()  # the caption counts them
    _click_first_point(page, plot)
    page.get_by_text("nearest neighbours in the embedding space").wait_for(timeout=TIMEOUT_MS)
    wait_until_idle(page, TIMEOUT_MS)
    names = [name for _, name in plot.evaluate(PLOT_TRACES)["withPoints"]]
    assert names[0] == "classes" and names[1] == "its neighbours" and "selected #" in names[2]
    assert page.locator(".stException").count() == 0
    screenshot_at_sizes(
        page, tmp_path, "inspect-scale", page.get_by_role("heading", name="Inspect")
    )


def test_compare_links_a_selection_across_many_class_files(
    app: AppUnderTest, files: Path, page
) -> None:
    open_compare(
        page, app.url, (f"files/{FOLDER}/big_a.npz", f"files/{FOLDER}/big_b.npz"), TIMEOUT_MS
    )
    # The stored PCA, rotated: no UMAP to wait for (the radio's input lies under its label).
    page.get_by_test_id("stRadio").get_by_text("PCA", exact=True).click()
    plots = page.locator(".js-plotly-plot").filter(has_text="PCA, rotated onto #1")
    plots.nth(1).wait_for(timeout=TIMEOUT_MS)
    wait_until_idle(page, TIMEOUT_MS)
    _click_first_point(page, plots.first)
    page.get_by_text("1 item highlighted in every projection.").wait_for(timeout=TIMEOUT_MS)
    wait_until_idle(page, TIMEOUT_MS)
    for index in range(2):  # the one item is a star in both projections
        drawn = plots.nth(index).evaluate(PLOT_TRACES)["withPoints"]
        assert len(drawn) == 2 and drawn[0][0] == "scattergl", drawn
    page.get_by_role("button", name="clear the highlight").click()
    page.get_by_text("Select points (click, box or lasso)").wait_for(timeout=TIMEOUT_MS)
    assert page.locator(".stException").count() == 0
