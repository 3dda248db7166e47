"""Inspect and Compare at scale in a real browser (issue 30 items 1-2, issue 28 item 2): Debian's
headless Chromium drives ``streamlit run app/main.py`` on generated embedding files and times, from
the action to settled (the expected text or plot on the page and no script run in progress):

- ``open``: the file's path entered on Inspect (after the page settled on the shipped checkpoint
  it opens first) until its projection is drawn (``open_drawn``) and until the whole page settled
  (``open_settled``);
- ``colour``: the colour mode switched (class → Recall@1 hit/miss → class);
- ``filter``: one class picked in the class filter, then removed;
- ``click``: a point clicked until its neighbours are listed; ``clear``: "clear selection";
- ``compare_click``: a point clicked in Compare's first projection until "1 item highlighted"
  (the same items in both files), ``compare_clear``: the highlight cleared.

Each interaction runs ``--repeats`` times on a warm server; the JSON holds every time and the
median. Files get their projection and evaluation stored first (``python -m dml_core project``,
timed as ``project_s``) unless ``--no-project``. ``--app-root`` runs another checkout's app
(e.g. ``git archive`` of an older commit) for before/after figures.

    python bench/app_scale_bench.py --sizes 4000:100 60000:12000 --dim 128
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.server import running_app  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
RUNNING = '[data-testid="stStatusWidgetRunningIcon"]'
FIRST_POINT = """(gd) => {
  const trace = gd._fullData.find(t => t.x && t.x.length > 0 && t.x[0] !== null);
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, size = gd._fullLayout._size;
  return {item: trace.customdata[0], x: size.l + xa.l2p(trace.x[0]), y: size.t + ya.l2p(trace.y[0])};
}"""


def write_file(path: Path, items: int, dim: int, classes: int, seed: int, spread: float) -> None:
    """``items`` embeddings of ``classes`` Gaussian classes (the same items and labels for every
    seed of one size: the class centres and labels come from seed 0)."""
    base = np.random.default_rng(0)
    labels = base.integers(0, classes, size=items)
    centres = base.normal(size=(classes, dim)).astype(np.float32)
    noise = np.random.default_rng(seed).normal(size=(items, dim)).astype(np.float32)
    embeddings = centres[labels] + spread * noise
    names = np.array([f"product {c:05d}" for c in range(classes)])
    np.savez(path, embeddings=embeddings, labels=labels, class_names=names)


def settle(page, condition: str, timeout_s: float = 120) -> float:
    """Seconds until ``condition`` (a JS expression) holds and no script run is in progress."""
    start = time.monotonic()
    page.wait_for_function(
        f"() => ({condition}) && !document.querySelector('{RUNNING}')",
        timeout=timeout_s * 1000,
        polling=50,
    )
    return time.monotonic() - start


def text_shown(text: str) -> str:
    return f"document.body.innerText.includes({json.dumps(text)})"


def has_trace(name: str) -> str:
    """Whether a plot on the page draws a trace called ``name`` (plotly's ``gd.data``)."""
    return (
        "[...document.querySelectorAll('.js-plotly-plot')].some(p => (p.data || []).some("
        f"t => t.name === {json.dumps(name)}))"
    )


def plot_titled(prefix: str, count: int = 1) -> str:
    return (
        "[...document.querySelectorAll('.js-plotly-plot')].filter(p => (p.querySelector('.gtitle')"
        f"?.textContent || '').includes({json.dumps(prefix)}) && p.querySelector('canvas')).length"
        f" >= {count}"
    )


def click_first_point(page, plot) -> int:
    plot.scroll_into_view_if_needed()
    point = plot.evaluate(FIRST_POINT)
    box = plot.bounding_box()
    page.mouse.move(box["x"] + point["x"], box["y"] + point["y"])
    page.wait_for_timeout(300)
    page.mouse.click(box["x"] + point["x"], box["y"] + point["y"])
    return int(point["item"])


def inspect_times(page, url: str, path: Path, repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    page.goto(f"{url}/inspect", wait_until="domcontentloaded")  # a shipped checkpoint first
    field = page.get_by_label("…or a path (under the allowed folders)", exact=True)
    field.wait_for(timeout=300_000)
    page.wait_for_function(plot_titled(" items"), timeout=300_000, polling=100)
    settle(page, "true", 300)
    field.fill(str(path))
    start = time.monotonic()
    field.press("Enter")
    # The Metrics caption of a file comes after its projection in the script: the plot is the file's.
    drawn = text_shown("Scored here from the file") + " && " + plot_titled(" items")
    page.wait_for_function(drawn, timeout=900_000, polling=100)
    times["open_drawn"] = [time.monotonic() - start]
    settle(page, text_shown("Confused classes") + " && " + text_shown("Export"), 900)
    times["open_settled"] = [time.monotonic() - start]
    page.wait_for_timeout(1000)
    colour = page.locator('[data-testid="stSelectbox"]').filter(has_text="colour by")
    classes = page.locator('[data-testid="stMultiSelect"]').filter(has_text="show only classes")
    for _ in range(repeats):
        for mode in ("Recall@1 hit/miss", "class"):
            option = page.get_by_role("option", name=mode, exact=True)
            for _ in range(5):  # a click right after another widget's may not open the list
                colour.click()
                try:
                    option.wait_for(timeout=2000)
                    break
                except Exception:
                    page.keyboard.press("Escape")
            option.click()
            hits = has_trace("Recall@1 hit")
            check = hits if mode != "class" else f"!{hits} && {has_trace('classes')}"
            times.setdefault("colour", []).append(settle(page, check))
        box = classes.locator("input")
        box.click()
        box.fill("product 00007")
        page.get_by_role("option", name="product 00007", exact=True).click()
        page.keyboard.press("Escape")
        start = time.monotonic()
        settle(page, has_trace("other classes"))
        times.setdefault("filter", []).append(time.monotonic() - start)
        classes.get_by_role("button", name="Remove product 00007").click()
        times.setdefault("filter", []).append(settle(page, f"!{has_trace('other classes')}"))
        plot = page.locator(".js-plotly-plot").filter(has_text=" items").first
        click_first_point(page, plot)  # the point drawn on top there may be another item
        times.setdefault("click", []).append(settle(page, text_shown("(Euclidean distance d;")))
        page.get_by_role("button", name="clear selection").click()
        times.setdefault("clear", []).append(
            settle(page, f"!{text_shown('(Euclidean distance d;')}")
        )
    return times


def compare_times(page, url: str, labels: list[str], repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    page.goto(f"{url}/compare", wait_until="domcontentloaded")
    picker = page.locator('[data-testid="stMultiSelect"] input').first
    picker.wait_for(timeout=120_000)
    settle(page, "true")
    picker.click()
    for _ in range(8):
        picker.press("Backspace")
    start = time.monotonic()
    for name in labels:
        picker.fill(name)
        page.get_by_role("option", name=name).click()
    picker.press("Escape")
    settle(page, plot_titled("UMAP", 2) + " && " + text_shown("The same query"), 900)
    times["compare_open"] = [time.monotonic() - start]
    page.wait_for_timeout(1000)
    for _ in range(repeats):
        plot = page.locator(".js-plotly-plot").filter(has_text="UMAP").first
        click_first_point(page, plot)
        times.setdefault("compare_click", []).append(settle(page, text_shown("1 item highlighted")))
        page.get_by_role("button", name="clear the highlight").click()
        times.setdefault("compare_clear", []).append(
            settle(page, f"!{text_shown('1 item highlighted')}")
        )
    return times


def run_size(args: argparse.Namespace, items: int, classes: int, folder: Path) -> dict:
    from playwright.sync_api import sync_playwright

    files = folder / f"n{items}"
    files.mkdir(parents=True, exist_ok=True)
    result: dict = {"items": items, "classes": classes, "dim": args.dim}
    paths = [files / f"model_{name}.npz" for name in ("a", "b")][: 2 if args.compare else 1]
    for seed, path in enumerate(paths):
        if not path.exists():
            write_file(path, items, args.dim, classes, seed, 0.6 + 0.2 * seed)
        sidecar = path.with_name(path.name + ".projection.npz")
        if not args.no_project and not sidecar.exists():
            start = time.monotonic()
            subprocess.run(
                [sys.executable, "-m", "dml_core", "project", str(path)], check=True, cwd=REPO
            )
            result.setdefault("project_s", []).append(round(time.monotonic() - start, 1))
    if args.prepare_only:
        return result
    env = {
        **os.environ,
        "DML_EXPLORER_UMAP": "on",
        "DML_EXPLORER_CHECKPOINT_DIRS": str(files),
        "DML_EXPLORER_RUNS_DIR": str(folder / "runs"),
        "DML_EXPLORER_PROJECTION_CACHE": str(folder / f"cache-{items}"),
        "DML_EXPLORER_CACHE": str(folder / f"cache-{items}"),
    }
    root = Path(args.app_root).resolve() if args.app_root else REPO
    with (
        running_app(
            cwd=root, env=env, log=folder / f"streamlit-{items}.log", timeout=180, stop_grace=2
        ) as app,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        times = inspect_times(page, app.url, paths[0], args.repeats)
        if args.compare:
            labels = [f"{files.name}/{path.name}" for path in paths]
            times.update(compare_times(page, app.url, labels, args.repeats))
        browser.close()
    result["seconds"] = {k: [round(v, 2) for v in vs] for k, vs in times.items()}
    result["median_s"] = {k: round(statistics.median(vs), 2) for k, vs in times.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["4000:100"], help="ITEMS:CLASSES")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folder", help="where the files are kept (default: a temporary one)")
    parser.add_argument("--no-project", action="store_true", help="no stored projection")
    parser.add_argument("--no-compare", dest="compare", action="store_false")
    parser.add_argument("--prepare-only", action="store_true", help="write and project only")
    parser.add_argument("--app-root", help="the checkout whose app is served (default: this)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="app-scale-") as scratch:
        folder = Path(args.folder or scratch)
        results = []
        for size in args.sizes:
            items, classes = (int(part) for part in size.split(":"))
            results.append(run_size(args, items, classes, folder))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"app_root": args.app_root or str(REPO), "results": results}, indent=2))


if __name__ == "__main__":
    main()
