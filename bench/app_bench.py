"""App responsiveness: time to a first projection (PCA) of a checkpoint, UMAP cold and warm.

Each repeat runs in a fresh Python process, as the app would start:
  t=0 the UMAP warm-up thread starts (as ``app/main.py`` does), then the checkpoint is loaded and
  its test split embedded → PCA shown (``pca_ready_s``); the UMAP of that split is queued behind
  the warm-up → ``umap_after_start_s``; a second UMAP in the warm process (``umap_warm_s``);
  reading a finished projection back from the disk cache (``umap_cached_read_s``). A separate
  fresh process times one UMAP with no warm-up at all (``umap_cold_s``, numba compilation
  included). Prints JSON with the median over repeats.

  python bench/app_bench.py [--checkpoint checkpoints/X.safetensors] [--repeats 3]

Without ``--checkpoint`` the first file in ``checkpoints/`` is used, else a glyphs checkpoint is
trained for one epoch into a temporary folder (same dataset size as the ``glyphs`` preset).
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

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def app_start_worker(checkpoint: Path) -> dict[str, float]:
    """One fresh-process measurement of what a user waits for after ``make app``."""
    start = time.perf_counter()
    from app import projection

    projection.start_warmup()
    from app.checkpoints import embed_split

    embedded = embed_split(checkpoint, "test")
    projection.pca_2d(embedded.embeddings)
    pca_ready = time.perf_counter() - start
    key = projection.projection_key(checkpoint, "test", f"bench-{os.getpid()}")
    projection.wait_for_umap(key, embedded.embeddings)
    umap_after_start = time.perf_counter() - start
    warm_start = time.perf_counter()
    projection.umap_2d(embedded.embeddings, seed=1)
    umap_warm = time.perf_counter() - warm_start
    read_start = time.perf_counter()
    assert projection.read_cached(key) is not None
    cached_read = time.perf_counter() - read_start
    return {
        "items": len(embedded.labels),
        "dim": int(embedded.embeddings.shape[1]),
        "pca_ready_s": pca_ready,
        "umap_after_start_s": umap_after_start,
        "umap_warm_s": umap_warm,
        "umap_cached_read_s": cached_read,
    }


def umap_cold_worker(checkpoint: Path) -> dict[str, float]:
    """One UMAP in a fresh process with no warm-up (import and numba compilation included)."""
    from app import projection
    from app.checkpoints import embed_split

    embedded = embed_split(checkpoint, "test")
    start = time.perf_counter()
    projection.umap_2d(embedded.embeddings)
    return {"umap_cold_s": time.perf_counter() - start}


def run_worker(kind: str, checkpoint: Path, env: dict[str, str]) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--checkpoint", str(checkpoint)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def default_checkpoint(scratch: Path) -> Path:
    shipped = sorted((REPO_ROOT / "checkpoints").glob("*.safetensors"))
    glyphs = [p for p in shipped if "glyph" in p.name]
    if glyphs:
        return glyphs[0]
    from dml_core.config import TrainConfig
    from dml_core.engine.trainer import Trainer
    from dml_core.presets import preset

    out = scratch / "glyphs-bench"
    Trainer(TrainConfig.from_dict({**preset("glyphs"), "epochs": 1}), out).run()
    return out / "last.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--worker", choices=["app-start", "umap-cold"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker = app_start_worker if args.worker == "app-start" else umap_cold_worker
        print(json.dumps(worker(args.checkpoint)))
        return
    with tempfile.TemporaryDirectory() as scratch:
        scratch_path = Path(scratch)
        checkpoint = (args.checkpoint or default_checkpoint(scratch_path)).resolve()
        env = {
            **os.environ,
            "DML_EXPLORER_PROJECTION_CACHE": str(scratch_path / "projections"),
            "DML_EXPLORER_CHECKPOINT_DIRS": str(checkpoint.parent),
            "DML_EXPLORER_UMAP": "on",
        }
        samples: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            for kind in ("app-start", "umap-cold"):
                for name, value in run_worker(kind, checkpoint, env).items():
                    samples.setdefault(name, []).append(value)
    result = {name: statistics.median(values) for name, values in samples.items()}
    result.update(
        checkpoint=str(
            checkpoint.relative_to(REPO_ROOT)
            if checkpoint.is_relative_to(REPO_ROOT)
            else checkpoint
        ),
        repeats=args.repeats,
        cpu_count=os.cpu_count(),
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
