"""Inspect's first picture needs neither torch nor umap (issue 28): everything the page does up to
its projection of a shipped checkpoint (its modules imported, the stored section opened, the kNN
report, the stored UMAP drawn) runs in a fresh process that never loads torch, torchvision, umap,
numba, sklearn or scipy; and the report it computes for a checkpoint that stores its metrics
equals the full one without the clustering metrics it skips."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from dml_core.metrics import retrieval_report

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED = REPO_ROOT / "checkpoints" / "glyphs-finetune-margin-base.safetensors"
HEAVY = ("torch", "torchvision", "umap", "numba", "pynndescent", "sklearn", "scipy")

FIRST_PICTURE = f"""
import json, sys
sys.path.insert(0, {str(REPO_ROOT)!r})
import streamlit  # noqa: F401
# app/main.py's imports, then the Inspect page's
from app.projection import start_warmup  # noqa: F401
from app.server import is_loopback, own_exposure_problem  # noqa: F401
from app import item_images, sources  # noqa: F401
from app.checkpoints import CHECKPOINT_DIRS_VARIABLE, allowed_roots  # noqa: F401
from app.panels import common
from app.panels import inspect as inspect_panels  # noqa: F401
from app.panels import projection as projection_panels
from app.panels.player import snapshot_paths  # noqa: F401
from app.figures.projection import inspect_projection_figure
from app import analysis
from dml_core.engine.checkpoint_header import CheckpointError  # noqa: F401
from dml_core.metrics import singular_value_spectrum  # noqa: F401

source = sources.resolve_source({str(SHIPPED)!r})
opened = common.open_source(source, sources.source_splits(source)[0])
metrics, report = common.analysed(opened)
coordinates, shown = projection_panels.layout(opened, "UMAP")
figure = inspect_projection_figure(
    coordinates, opened.labels, opened.class_names,
    hits=analysis.hit_at_1(report, opened.labels),
    average_precision=report.average_precision_at_r,
)
print(json.dumps({{
    "origin": opened.origin,
    "shown": shown,
    "stored_umap": bool(opened.umap is not None and (coordinates == opened.umap).all()),
    "points": int(len(coordinates)),
    "nmi": metrics.get("nmi"),
    "loaded": sorted(name for name in {HEAVY!r} if name in sys.modules),
}}))
"""


def test_inspect_draws_a_stored_checkpoint_without_torch_umap_or_sklearn(tmp_path: Path) -> None:
    environment = {
        "PATH": "/usr/bin:/bin",
        "DML_EXPLORER_PROJECTION_CACHE": str(tmp_path / "projections"),
        "DML_EXPLORER_RUNS_DIR": str(tmp_path / "runs"),
        "DML_EXPLORER_CACHE": str(tmp_path / "cache"),
    }
    done = subprocess.run(
        [sys.executable, "-c", FIRST_PICTURE],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["origin"] == "stored" and result["shown"] == "UMAP" and result["stored_umap"]
    assert result["points"] > 1000
    assert result["nmi"] is not None  # the stored metrics, not re-scored
    assert result["loaded"] == [], f"the first picture loaded {result['loaded']}"


def test_the_report_without_clustering_is_the_full_one_less_nmi_and_f1() -> None:
    generator = np.random.default_rng(3)
    labels = np.repeat(np.arange(12), 9)
    points = generator.normal(size=(len(labels), 8)) + labels[:, None] * 0.4
    full = retrieval_report(points, labels, ks=(1, 4), keep_neighbors=5)
    light = retrieval_report(points, labels, ks=(1, 4), keep_neighbors=5, clustering=False)
    assert {"nmi", "f1"} <= full.metrics.keys()
    assert light.metrics == {k: v for k, v in full.metrics.items() if k not in ("nmi", "f1")}
    np.testing.assert_array_equal(light.neighbor_indices, full.neighbor_indices)
    np.testing.assert_array_equal(light.average_precision_at_r, full.average_precision_at_r)
