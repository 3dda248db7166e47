"""Inspect and Compare in a real browser (the session's server, ``conftest.py``), Debian's headless
Chromium, on embedding files (``.npz`` with image paths) written by the test.

Clicking one point of Inspect's projection shows its nearest neighbours with thumbnails; Compare
shows per-class Δ and the queries one model gets right and the other wrong.
``DML_EXPLORER_SCREENSHOT_DIR=docs/screenshots`` writes ``inspect-selection-{1400,1024}.png`` and
``compare-perclass-{1400,1024}.png`` there; otherwise into the test's temporary folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from browser_support import (
    AppUnderTest,
    open_compare,
    open_tab,
    screenshot_at_sizes,
    wait_until_idle,
)
from PIL import Image, ImageDraw

PAGE_TIMEOUT_MS = 90_000
CLASSES, PER_CLASS, DIM = 6, 10, 16
POINT_POSITION = """(gd) => {
  const trace = gd._fullData[0];
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, size = gd._fullLayout._size;
  return {item: trace.customdata[0],
          x: size.l + xa.l2p(trace.x[0]), y: size.t + ya.l2p(trace.y[0])};
}"""
"""Where the first point of the first trace is drawn, in pixels from the plot's top left."""

pytestmark = pytest.mark.e2e


def write_embedding_files(folder: Path) -> None:
    """Two models' embeddings of the same 60 pictures (6 classes), with image paths."""
    images = folder / "images"
    images.mkdir()
    labels = np.repeat(np.arange(CLASSES), PER_CLASS)
    rng = np.random.default_rng(0)
    paths = []
    for index, label in enumerate(labels):
        picture = Image.new("RGB", (48, 48), (245, 245, 245))
        draw = ImageDraw.Draw(picture)
        hue = [(200, 40, 40), (40, 120, 200), (40, 160, 60), (200, 140, 20), (130, 60, 170),
               (20, 150, 150)][label]  # fmt: skip
        offset = rng.integers(0, 10, size=2)
        draw.ellipse([6 + offset[0], 6 + offset[1], 34 + offset[0], 34 + offset[1]], fill=hue)
        draw.text((4, 34), str(index), fill=(0, 0, 0))
        picture.save(images / f"{index}.png")
        paths.append(f"images/{index}.png")
    centres = rng.normal(size=(CLASSES, DIM))
    for name, spread in (("model_a", 0.9), ("model_b", 0.6)):
        embeddings = centres[labels] + spread * rng.normal(size=(len(labels), DIM))
        np.savez(
            folder / f"{name}.npz",
            embeddings=embeddings.astype(np.float32),
            labels=labels,
            paths=np.array(paths),
            class_names=np.array([f"shape {c}" for c in range(CLASSES)]),
        )


FOLDER = "inspect-compare"
"""This module's sub-folder of the server's ``files`` folder (labelled ``files/inspect-compare/…``)."""


@pytest.fixture(scope="module")
def served(app: AppUnderTest) -> tuple[str, Path]:
    extra = app.files_for(FOLDER)
    write_embedding_files(extra)
    return app.url, extra


def test_clicking_a_point_in_inspect_shows_its_neighbours(
    served: tuple[str, Path], page, tmp_path: Path
) -> None:
    url, extra = served
    page.goto(f"{url}/inspect", wait_until="domcontentloaded")
    field = page.get_by_label("…or a path (under the allowed folders)", exact=True)
    field.wait_for(timeout=PAGE_TIMEOUT_MS)
    field.fill(str(extra / "model_a.npz"))
    field.press("Enter")
    plot = page.locator(".js-plotly-plot").filter(has_text="PCA ·").first
    plot.wait_for(timeout=PAGE_TIMEOUT_MS)
    wait_until_idle(page, PAGE_TIMEOUT_MS)
    plot.scroll_into_view_if_needed()
    point = plot.evaluate(POINT_POSITION)
    box = plot.bounding_box()
    page.mouse.move(box["x"] + point["x"], box["y"] + point["y"])
    page.wait_for_timeout(300)
    page.mouse.click(box["x"] + point["x"], box["y"] + point["y"])
    heading = page.get_by_text(f"Item #{point['item']} ·").first
    heading.wait_for(timeout=PAGE_TIMEOUT_MS)
    page.get_by_text("nearest neighbours in the embedding space").wait_for(timeout=10_000)
    grid = page.locator("figure").filter(has_text="d=")
    assert grid.count() >= 5
    assert grid.first.locator("img").get_attribute("src").startswith("data:image/png")
    assert page.locator(".stException").count() == 0
    screenshot_at_sizes(page, tmp_path, "inspect-selection", plot)


def test_compare_shows_per_class_delta_and_disagreements(
    served: tuple[str, Path], page, tmp_path: Path
) -> None:
    url, _ = served
    open_compare(
        page, url, (f"files/{FOLDER}/model_a.npz", f"files/{FOLDER}/model_b.npz"), PAGE_TIMEOUT_MS
    )
    page.get_by_role("heading", name="Per-class Δ (B − A)").wait_for(timeout=PAGE_TIMEOUT_MS)
    page.get_by_text("classes got better").wait_for(timeout=PAGE_TIMEOUT_MS)
    # UMAP is on: the files hold the same items, so B's UMAP is fitted from A's layout in the
    # background and both turn from PCA into UMAP in one frame when it ends, rerunning the page;
    # the tabs below are clicked after that.
    page.wait_for_function(
        """() => [...document.querySelectorAll('.js-plotly-plot')].filter(
            p => /model_[ab]\\.npz.*UMAP from #1's layout/.test(
                     p.querySelector('.gtitle')?.textContent || '')
                 && p.querySelector('.scatterlayer .point, canvas')).length == 2""",
        timeout=PAGE_TIMEOUT_MS,
    )
    wait_until_idle(page, PAGE_TIMEOUT_MS)
    page.get_by_role("tab", name="B right, A wrong").wait_for(timeout=PAGE_TIMEOUT_MS)
    rows = page.locator("figure:visible").filter(has_text="B · #")
    open_tab(page, "B right, A wrong", rows, PAGE_TIMEOUT_MS)
    assert page.locator("figure:visible").filter(has_text="A · #").count() == rows.count()
    assert page.locator(".stException").count() == 0
    sections = {
        "perclass": "Per-class Δ (B − A)",
        "metrics": "Metrics (Δ against the first)",
    }
    for name, heading in sections.items():
        anchor = page.get_by_role("heading", name=heading)
        screenshot_at_sizes(page, tmp_path, f"compare-{name}", anchor)
