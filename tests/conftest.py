from __future__ import annotations

import os

import pytest
import torch

# Two cores: keep torch from oversubscribing them when tests start subprocesses.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Generated datasets (glyphs) are cached per test session, never in the user's home."""
    monkeypatch.setenv("DML_EXPLORER_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
