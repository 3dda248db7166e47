"""The app's settings in one place: paths, environment variables, metric lists and defaults.

Environment variables (all optional):

- ``DML_EXPLORER_RUNS_DIR``: where the Train page starts runs (default ``<repo>/runs``).
- ``DML_EXPLORER_CHECKPOINT_DIRS``: more folders the app may open checkpoints from
  (``os.pathsep``-separated), besides ``<repo>/checkpoints`` and the runs folder.
- ``DML_EXPLORER_PROJECTION_CACHE``: the on-disk cache of embeddings and projections
  (default ``<repo>/.cache/projections``).
- ``DML_EXPLORER_UMAP``: ``off`` (or ``0``/``false``) shows PCA only.

The bind address is not set here: ``app/.streamlit/config.toml`` (read by ``streamlit run``
whatever the current folder) sets ``127.0.0.1``, and :mod:`app.server` refuses to serve when
the server listens elsewhere without being told to.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from dml_core.config import TrainConfig

REPO_ROOT = Path(__file__).resolve().parent.parent

RUNS_DIR_VARIABLE = "DML_EXPLORER_RUNS_DIR"
CHECKPOINT_DIRS_VARIABLE = "DML_EXPLORER_CHECKPOINT_DIRS"
CACHE_DIR_VARIABLE = "DML_EXPLORER_PROJECTION_CACHE"
UMAP_VARIABLE = "DML_EXPLORER_UMAP"

CURVE_METRICS: tuple[tuple[str, str], ...] = (
    ("test/recall@1", "Recall@1 (test)"),
    ("test/map@r", "MAP@R (test)"),
    ("train/rho@2", "ρ@2 (train)"),
    ("train/pi_ratio", "π_ratio (train)"),
)
"""The metrics the Train page plots per evaluation and Inspect shows per stored history entry:
``(event key, panel title)``."""
CURVE_KEYS = tuple(key for key, _ in CURVE_METRICS)
UNIT_INTERVAL_METRICS = frozenset({"test/recall@1", "test/map@r"})
"""Metrics that live in [0, 1]; their axes are drawn from 0 to 1."""

DEFAULT_KS: tuple[int, ...] = tuple(
    next(f for f in dataclasses.fields(TrainConfig) if f.name == "eval_ks").default_factory()
)
"""Recall@k ranks used when a checkpoint's config names none (TrainConfig's default)."""

LIVE_REFRESH_SECONDS = 1.0
"""How often the Train page re-reads the events of a run that is still going (never when idle)."""


def runs_dir() -> Path:
    """``$DML_EXPLORER_RUNS_DIR`` if set, else ``<repo>/runs``."""
    configured = os.environ.get(RUNS_DIR_VARIABLE)
    return Path(configured).expanduser() if configured else REPO_ROOT / "runs"


def shown_path(path: Path) -> str:
    """``path`` as a caption names it: relative to the repository when inside it (``runs``), else
    absolute with ``~`` for the home folder."""
    resolved = Path(path).expanduser().resolve()
    if resolved.is_relative_to(REPO_ROOT):
        return str(resolved.relative_to(REPO_ROOT)) or "."
    home = Path.home().resolve()
    if resolved.is_relative_to(home) and resolved != home:
        return f"~/{resolved.relative_to(home)}"
    return str(resolved)


def cache_dir() -> Path:
    """``$DML_EXPLORER_PROJECTION_CACHE`` if set, else ``<repo>/.cache/projections``."""
    configured = os.environ.get(CACHE_DIR_VARIABLE)
    return Path(configured).expanduser() if configured else REPO_ROOT / ".cache" / "projections"


def umap_enabled() -> bool:
    """False when ``DML_EXPLORER_UMAP`` is ``off`` (or ``0``/``false``)."""
    return os.environ.get(UMAP_VARIABLE, "on").strip().lower() not in ("off", "0", "false")


def allowed_roots() -> list[Path]:
    """``<repo>/checkpoints``, the runs folder and ``$DML_EXPLORER_CHECKPOINT_DIRS``, resolved."""
    roots = [REPO_ROOT / "checkpoints", runs_dir()]
    extra = os.environ.get(CHECKPOINT_DIRS_VARIABLE, "")
    roots += [Path(part).expanduser() for part in extra.split(os.pathsep) if part.strip()]
    unique: list[Path] = []
    for root in roots:
        resolved = root.resolve()
        if resolved not in unique:
            unique.append(resolved)
    return unique
