from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Two cores: under pytest-xdist's two workers one torch/OpenMP thread each (two each would
# oversubscribe the cores); the subprocesses tests start inherit OMP_NUM_THREADS.
THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, os.cpu_count() or 1)
torch.set_num_threads(THREADS)
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Generated datasets (glyphs) are cached per test session, never in the user's home."""
    monkeypatch.setenv("DML_EXPLORER_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist's ``--dist loadgroup``: each test module runs in one worker, so its
    module-scoped fixtures (test_faults' 14 faulted runs, test_cli's toy runs) are built once. The
    browser modules of ``tests/e2e`` are spread too: each worker that runs one starts one app server
    for its session (``e2e/conftest.py``), so the browser tests no longer queue in one worker."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group(Path(str(item.fspath)).stem))
