"""App responsiveness before and after the stored evaluation (issue 13), in one run.

``--part data`` (default): each measurement in a fresh Python process, as the app meets it.

- ``before_*``: what the app did before: embed the test split from the dataset, PCA, then UMAP
  with umap-learn's defaults (NN-descent, spectral init, 500 epochs) and numba compiling its
  kernels in the process.
- ``after_stored_*``: a checkpoint carrying its evaluation (``python -m dml_core project``): the
  section is read, PCA and UMAP included; nothing is embedded.
- ``after_no_section_*``: the same checkpoint with the section removed: embed, PCA, then UMAP with
  the interactive settings (faiss kNN, PCA init, 200 epochs; numba's kernels from the disk cache).
- ``compare_*`` (one warm process, both sections read): two independent default UMAPs (before)
  versus the second checkpoint's UMAP initialised from the first one's stored layout (after).
- ``quality``: trustworthiness (sklearn, 15 neighbours, cosine) of umap-learn's defaults, the
  interactive settings and PCA on each checkpoint.

``--part browser``: a fresh ``streamlit run`` driven by Debian's Chromium (playwright): seconds
from the server process start to the projection on Inspect, then on the running server from
navigating to Inspect to the projection, and to Compare's aligned projections.
``--app-root`` measures another checkout (e.g. ``git worktree add /tmp/before HEAD``) for the
"before" column. Prints JSON with medians over ``--repeats``.

  python bench/app_bench.py [--part data|browser] [--repeats 1] [--checkpoints A B]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from app.server import running_app  # noqa: E402  (the launcher the browser tests use)

SHIPPED = (
    "checkpoints/glyphs-finetune-margin-base.safetensors",
    "checkpoints/glyphs-finetune-margin-rho0.35.safetensors",
)
CHROMIUM = "/usr/bin/chromium"


def before_umap(points):  # type: ignore[no-untyped-def]
    """The app's UMAP before issue 13: umap-learn's defaults, cosine, 15 neighbours."""
    import umap

    reducer = umap.UMAP(
        n_components=2, n_neighbors=15, min_dist=0.1, metric="cosine", random_state=0, n_jobs=1
    )
    return reducer.fit_transform(points)


def worker_before(checkpoint: str, started: float) -> dict[str, float]:
    from dml_core.engine.evaluation import embed_checkpoint
    from dml_core.engine.projection import pca_2d

    embedded = embed_checkpoint(checkpoint, "test", device="cpu", amp="off")
    points = embedded.embeddings.numpy()
    pca_2d(points)
    pca_ready = time.perf_counter() - started
    fit = time.perf_counter()
    before_umap(points)
    return {
        "before_pca_ready_s": pca_ready,
        "before_umap_fit_s": time.perf_counter() - fit,
        "before_umap_ready_s": time.perf_counter() - started,
    }


def worker_stored(checkpoint: str, started: float) -> dict[str, float]:
    from dml_core.engine.stored_section import read_evaluation

    stored = read_evaluation(checkpoint)
    assert stored is not None and stored.umap is not None, f"{checkpoint} has no stored UMAP"
    return {"after_stored_projection_ready_s": time.perf_counter() - started}


def worker_no_section(checkpoint: str, started: float) -> dict[str, float]:
    from dml_core.engine.projection import pca_2d, umap_2d
    from dml_core.engine.stored_evaluation import open_evaluation

    evaluation, note = open_evaluation(checkpoint, device="cpu")
    assert note is not None, "the copy still has its section"
    embeddings_ready = time.perf_counter()
    points = evaluation.embeddings.astype("float32")
    pca_2d(points)
    pca_done = time.perf_counter()
    umap_2d(points)
    done = time.perf_counter()
    return {
        "after_no_section_embedded_s": embeddings_ready - started,
        "after_no_section_pca_after_embeddings_s": pca_done - embeddings_ready,
        "after_no_section_umap_fit_s": done - pca_done,
        "after_no_section_umap_ready_s": done - started,
    }


def worker_compare(first: str, second: str, started: float) -> dict[str, float]:
    from dml_core.engine.projection import umap_2d
    from dml_core.engine.stored_section import read_evaluation

    reference, other = read_evaluation(first), read_evaluation(second)
    points = other.embeddings.astype("float32")
    umap_2d(points[:300])  # the server is running: its kernels are loaded
    before_umap(points[:300])
    start = time.perf_counter()
    before_umap(reference.embeddings.astype("float32"))
    before_umap(points)
    middle = time.perf_counter()
    umap_2d(points, init=reference.umap)
    return {
        "compare_before_two_default_umaps_s": middle - start,
        "compare_after_aligned_umap_s": time.perf_counter() - middle,
    }


def worker_quality(checkpoint: str) -> dict[str, float]:
    from dml_core.engine.projection import (
        INTERACTIVE,
        UMAP_DEFAULTS,
        pca_2d,
        trustworthiness,
        umap_2d,
    )
    from dml_core.engine.stored_section import read_evaluation

    stored = read_evaluation(checkpoint)
    points = stored.embeddings.astype("float32")
    name = Path(checkpoint).stem
    return {
        f"{name}_trust_defaults": trustworthiness(points, umap_2d(points, UMAP_DEFAULTS)),
        f"{name}_trust_interactive": trustworthiness(points, umap_2d(points, INTERACTIVE)),
        f"{name}_trust_stored": trustworthiness(points, stored.umap),
        f"{name}_trust_pca": trustworthiness(points, pca_2d(points)),
    }


def run_worker(*args: str) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--worker", *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def without_section(checkpoint: Path, folder: Path) -> Path:
    """A copy of ``checkpoint`` with its evaluation section removed (an 'older' checkpoint)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from dml_core.engine.stored_section import PREFIX, SECTION_KEY

    copy = folder / f"{checkpoint.stem}-no-section.safetensors"
    with safe_open(str(checkpoint), framework="pt") as handle:
        header = {k: v for k, v in (handle.metadata() or {}).items() if k != SECTION_KEY}
    tensors = {k: v for k, v in load_file(str(checkpoint)).items() if not k.startswith(PREFIX)}
    save_file(tensors, str(copy), metadata=header)
    return copy


def data_part(checkpoints: list[Path], repeats: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {}

    def add(values: dict[str, float]) -> None:
        for name, value in values.items():
            samples.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory() as scratch:
        bare = without_section(checkpoints[0], Path(scratch))
        for _ in range(repeats):
            add(run_worker("before", str(checkpoints[0])))
            add(run_worker("stored", str(checkpoints[0])))
            add(run_worker("no-section", str(bare)))
            if len(checkpoints) > 1:
                add(run_worker("compare", str(checkpoints[0]), str(checkpoints[1])))
        for checkpoint in checkpoints:
            add(run_worker("quality", str(checkpoint)))
    return {name: round(statistics.median(values), 4) for name, values in samples.items()}


# --- the browser part ---------------------------------------------------------------------------


FIRST_PROJECTION = "PCA|UMAP"
UMAP_READY = "UMAP(?! computing)"


def _projection_visible(page, pattern: str, count: int = 1, timeout_ms: int = 600_000) -> None:  # type: ignore[no-untyped-def]
    """Wait until ``count`` plotly charts whose title matches ``pattern`` have drawn points."""
    page.wait_for_function(
        """([pattern, count]) => {
            const expression = new RegExp(pattern);
            const plots = [...document.querySelectorAll('.js-plotly-plot')].filter(
                p => expression.test(p.querySelector('.gtitle')?.textContent || ''));
            return plots.filter(p => p.querySelector('.scatterlayer .point, canvas')).length
                >= count;
        }""",
        arg=[pattern, count],
        timeout=timeout_ms,
    )


def browser_part(app_root: Path, repeats: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    samples: dict[str, list[float]] = {}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as scratch:
            env = {
                **os.environ,
                "DML_EXPLORER_PROJECTION_CACHE": str(Path(scratch) / "projections"),
                "DML_EXPLORER_RUNS_DIR": str(Path(scratch) / "runs"),
            }
            times: dict[str, float] = {}
            started = time.perf_counter()
            with running_app(cwd=app_root, env=env, timeout=120) as app, sync_playwright() as pw:
                url = app.url
                browser = pw.chromium.launch(
                    executable_path=CHROMIUM, args=["--headless", "--no-sandbox"]
                )
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"{url}/inspect", wait_until="domcontentloaded")
                _projection_visible(page, FIRST_PROJECTION)
                times["inspect_fresh_first_projection_s"] = time.perf_counter() - started
                _projection_visible(page, UMAP_READY)
                times["inspect_fresh_umap_s"] = time.perf_counter() - started
                page.goto(f"{url}/compare", wait_until="domcontentloaded")
                begin = time.perf_counter()
                _projection_visible(page, FIRST_PROJECTION, count=2)
                times["compare_running_first_projections_s"] = time.perf_counter() - begin
                _projection_visible(page, UMAP_READY, count=2)
                times["compare_running_umaps_s"] = time.perf_counter() - begin
                page.goto(f"{url}/inspect", wait_until="domcontentloaded")
                begin = time.perf_counter()
                _projection_visible(page, UMAP_READY)
                times["inspect_running_umap_s"] = time.perf_counter() - begin
                browser.close()
        for name, value in times.items():
            samples.setdefault(name, []).append(value)
    return {name: round(statistics.median(values), 2) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["data", "browser"], default="data")
    parser.add_argument("--checkpoints", nargs="+", type=Path)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--app-root", type=Path, default=REPO_ROOT)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        started = time.perf_counter()
        kind, *paths = args.worker
        workers = {
            "before": lambda: worker_before(paths[0], started),
            "stored": lambda: worker_stored(paths[0], started),
            "no-section": lambda: worker_no_section(paths[0], started),
            "compare": lambda: worker_compare(paths[0], paths[1], started),
            "quality": lambda: worker_quality(paths[0]),
        }
        print(json.dumps(workers[kind]()))
        return
    checkpoints = [(REPO_ROOT / p).resolve() for p in (args.checkpoints or SHIPPED)]
    if args.part == "data":
        result = data_part(checkpoints, args.repeats)
    else:
        if shutil.which(CHROMIUM) is None:
            raise SystemExit(f"the browser part needs {CHROMIUM}")
        result = browser_part(args.app_root.resolve(), args.repeats)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result.update(part=args.part, repeats=args.repeats, cpu_count=os.cpu_count(), load=load)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
