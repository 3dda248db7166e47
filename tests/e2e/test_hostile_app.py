"""Hostile files in a real browser (issue 27, docs/DESIGN.md §9): one allowed folder holds files
that once raised on Inspect — a checkpoint without a config, one with an empty config, one with
``eval_ks="abc"``, one whose history holds text, a one-class embedding file, an all-zero one, a
``.npz`` whose header claims 256 GiB, a symlink loop — beside one good embedding file. Inspect
lists the checkpoints and the loop as unreadable with their reasons, typing any bad file shows one
error line (never a ``.stException``), the server survives and the good file opens.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from browser_support import AppUnderTest, wait_until_idle

PAGE_TIMEOUT_MS = 90_000
FOLDER = "hostile"
PATH_FIELD = "…or a path (under the allowed folders)"

pytestmark = pytest.mark.e2e

CHECKPOINT_REASONS = {
    "no-config.safetensors": "has no training config",
    "empty-config.safetensors": "has no training config",
    "eval-ks.safetensors": "eval_ks must be a list of integers",
    "history.safetensors": "'test/recall@1' is 'high'",
}
FILE_REASONS = {
    "one-class.npz": "embeddings need at least two classes",
    "zeros.npz": "every embedding row is zero",
    "huge.npz": "is 256 GiB, beyond the limit",
}


def huge_npz(path: Path) -> None:
    """A 300-byte ``.npz`` whose ``embeddings.npy`` header claims (2²⁰, 2¹⁶) float32: 256 GiB."""
    from numpy.lib import format as npy_format

    header, labels = io.BytesIO(), io.BytesIO()
    npy_format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (1 << 20, 1 << 16)}
    )
    np.save(labels, np.arange(4) % 2)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("embeddings.npy", header.getvalue() + b"\0" * 64)
        archive.writestr("labels.npy", labels.getvalue())


def write_hostile_folder(folder: Path) -> None:
    from dml_core.config import TrainConfig
    from dml_core.engine.checkpoint import save_checkpoint
    from dml_core.models import build_model
    from dml_core.presets import preset

    config = TrainConfig.from_dict({**preset("toy"), "device": "cpu"}).to_dict()
    model = build_model("mlp", 2, pretrained=None, frozen_bn=False, normalize=True, in_channels=3)
    base = {"kind": "last", "config": config, "model": model.config(), "history": []}
    documents = {
        "no-config": {k: v for k, v in base.items() if k != "config"},
        "empty-config": {**base, "config": {}},
        "eval-ks": {**base, "config": {**config, "eval_ks": "abc"}},
        "history": {**base, "history": [{"epoch": 1, "test/recall@1": "high"}]},
    }
    for name, document in documents.items():
        save_checkpoint(folder / f"{name}.safetensors", model, document)
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 10)
    points = rng.normal(size=(40, 8)).astype(np.float32)
    np.savez(folder / "good.npz", embeddings=points + 3 * np.eye(8)[labels], labels=labels)
    np.savez(folder / "one-class.npz", embeddings=points, labels=np.zeros(40, int))
    np.savez(folder / "zeros.npz", embeddings=np.zeros((40, 8), np.float32), labels=labels)
    huge_npz(folder / "huge.npz")
    (folder / "loop-a.npz").symlink_to(folder / "loop-b.npz")
    (folder / "loop-b.npz").symlink_to(folder / "loop-a.npz")


@pytest.fixture(scope="module")
def hostile(app: AppUnderTest) -> tuple[str, Path]:
    folder = app.files_for(FOLDER)
    write_hostile_folder(folder)
    return app.url, folder


def _open(page, url: str, path: Path | None = None) -> None:
    page.goto(f"{url}/inspect", wait_until="domcontentloaded")
    field = page.get_by_label(PATH_FIELD, exact=True)
    field.wait_for(timeout=PAGE_TIMEOUT_MS)
    if path is not None:
        field.fill(str(path))
        field.press("Enter")
    wait_until_idle(page, PAGE_TIMEOUT_MS)


def _unreadable_lines(page) -> list[str]:
    page.get_by_text("unreadable files left out").first.click()
    lines = page.locator("text=/^unreadable: files\\/hostile\\//")
    lines.first.wait_for(timeout=PAGE_TIMEOUT_MS)
    return [line.removeprefix("unreadable: ") for line in lines.all_inner_texts()]


def test_inspect_lists_bad_files_shows_one_line_each_and_opens_the_good_one(
    hostile: tuple[str, Path], page
) -> None:
    url, folder = hostile
    _open(page, url)
    listed = _unreadable_lines(page)
    for name, reason in CHECKPOINT_REASONS.items():
        assert any(
            line.startswith(f"files/{FOLDER}/{name}: ") and reason in line for line in listed
        ), (name, listed)
    for name in ("loop-a.npz", "loop-b.npz"):
        assert f"files/{FOLDER}/{name}: a symlink loop" in listed
    assert page.locator(".stException").count() == 0
    for name, reason in {**CHECKPOINT_REASONS, **FILE_REASONS}.items():
        _open(page, url, folder / name)
        alert = page.locator('[data-testid="stAlert"]').filter(has_text=reason)
        alert.first.wait_for(timeout=PAGE_TIMEOUT_MS)
        assert str(folder / name) in alert.first.inner_text()  # the line names the file
        assert page.locator(".stException").count() == 0, name
    _open(page, url, folder / "loop-a.npz")
    alert = page.locator('[data-testid="stAlert"]').filter(has_text="symlink loop")
    alert.first.wait_for(timeout=PAGE_TIMEOUT_MS)
    assert page.locator(".stException").count() == 0
    _open(page, url, folder / "good.npz")  # the server is still there and the good file opens
    for heading in ("Metrics", "Singular-value spectrum"):
        page.get_by_role("heading", name=heading).wait_for(timeout=PAGE_TIMEOUT_MS)
    wait_until_idle(page, PAGE_TIMEOUT_MS)
    assert page.locator(".js-plotly-plot").count() >= 2
    assert page.locator('[data-testid="stAlert"]').filter(has_text="good.npz").count() == 0
    assert page.locator(".stException").count() == 0


def test_inspect_lists_the_bad_embedding_files_as_unreadable(
    hostile: tuple[str, Path], page
) -> None:
    url, _ = hostile
    _open(page, url)
    listed = _unreadable_lines(page)
    for name in ("one-class.npz", "huge.npz"):
        assert any(line.startswith(f"files/{FOLDER}/{name}: ") for line in listed), (name, listed)
