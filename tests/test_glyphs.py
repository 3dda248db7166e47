"""The procedural glyphs benchmark: determinism, class structure, splits and the two caches."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dml_core.data import build_dataset
from dml_core.data.glyphs import (
    GlyphSpec,
    bezier_basis,
    clear_memory_cache,
    generate_glyphs,
    glyph_cache_dir,
    load_glyphs,
    quadratic_as_cubic,
)
from dml_core.data.subset import ClassSubset
from dml_core.io import atomic_save_npz

SMALL = {"num_classes": 12, "samples_per_class": 6, "image_size": 32}


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("DML_EXPLORER_CACHE", str(tmp_path / "cache"))
    clear_memory_cache()
    yield tmp_path / "cache" / "glyphs"
    clear_memory_cache()


def test_same_seed_same_bytes_other_seed_differs() -> None:
    images, class_ids = generate_glyphs(GlyphSpec(**SMALL, seed=5))
    again, _ = generate_glyphs(GlyphSpec(**SMALL, seed=5))
    other, _ = generate_glyphs(GlyphSpec(**SMALL, seed=6))
    assert images.shape == (72, 32, 32) and images.dtype == np.uint8
    assert images.tobytes() == again.tobytes()
    assert (images != other).any(axis=(1, 2)).all()  # every single image changes
    assert class_ids.tolist() == np.repeat(np.arange(12), 6).tolist()


def test_each_image_depends_only_on_seed_class_and_sample() -> None:
    """Class c's sample k is identical whatever the number of classes or samples generated."""
    small, _ = generate_glyphs(GlyphSpec(num_classes=4, samples_per_class=3, image_size=32))
    large, _ = generate_glyphs(GlyphSpec(num_classes=6, samples_per_class=5, image_size=32))
    for class_id in range(4):
        assert np.array_equal(
            small[class_id * 3 : class_id * 3 + 3], large[class_id * 5 : class_id * 5 + 3]
        )


def intra_over_inter(images: np.ndarray, class_ids: np.ndarray, pool: int) -> float:
    """Mean Euclidean distance between same-class images over that between other-class images,
    after ``pool``×``pool`` average pooling."""
    count, height, width = images.shape
    pooled = images.astype(np.float64).reshape(count, height // pool, pool, width // pool, pool)
    flat = pooled.mean(axis=(2, 4)).reshape(count, -1) / 255
    distances = np.sqrt(((flat[:, None] - flat[None]) ** 2).sum(-1))
    same = class_ids[:, None] == class_ids[None]
    off_diagonal = ~np.eye(count, dtype=bool)
    return distances[same & off_diagonal].mean() / distances[~same].mean()


def test_intra_class_distance_below_inter_class() -> None:
    images, class_ids = generate_glyphs(
        GlyphSpec(num_classes=20, samples_per_class=8, image_size=32)
    )
    assert intra_over_inter(images, class_ids, pool=1) < 1.0
    assert intra_over_inter(images, class_ids, pool=4) < 0.95  # coarse shape is the class's
    calm, _ = generate_glyphs(
        GlyphSpec(num_classes=20, samples_per_class=8, image_size=32, difficulty=0.25)
    )
    assert intra_over_inter(calm, class_ids, pool=1) < intra_over_inter(images, class_ids, pool=1)


def centres_of_mass(images: np.ndarray) -> np.ndarray:
    """Intensity-weighted (row, column) centre of each image, in pixels."""
    weights = images.astype(np.float64)
    grid = np.arange(images.shape[1], dtype=np.float64)
    total = weights.sum(axis=(1, 2))
    rows = (weights.sum(axis=2) * grid).sum(axis=1) / total
    columns = (weights.sum(axis=1) * grid).sum(axis=1) / total
    return np.stack([rows, columns], axis=1)


def test_difficulty_zero_removes_geometric_jitter() -> None:
    """Without jitter, samples of a class differ only in stroke width: same centre of mass."""
    calm = GlyphSpec(**SMALL, difficulty=0.0, distractor_strokes=0)
    centres = centres_of_mass(generate_glyphs(calm)[0]).reshape(12, 6, 2)
    assert np.abs(centres - centres[:, :1]).max() < 0.5
    jittered = centres_of_mass(generate_glyphs(GlyphSpec(**SMALL))[0]).reshape(12, 6, 2)
    assert np.abs(jittered - jittered[:, :1]).max() > 1.0


def test_bezier_helpers_against_explicit_formulas() -> None:
    rng = np.random.default_rng(0)
    quadratic = rng.uniform(-1, 1, (3, 2))
    t = np.linspace(0, 1, 7)
    direct = (
        (1 - t)[:, None] ** 2 * quadratic[0]
        + 2 * ((1 - t) * t)[:, None] * quadratic[1]
        + t[:, None] ** 2 * quadratic[2]
    )
    assert np.allclose(bezier_basis(7) @ quadratic_as_cubic(quadratic), direct)
    assert np.allclose(bezier_basis(7).sum(axis=1), 1.0)


def test_dataset_splits_labels_and_items() -> None:
    train = build_dataset("glyphs", split="train", **SMALL)
    test = build_dataset("glyphs", split="test", **SMALL)
    assert len(train) == len(test) == 36 and train.num_classes == test.num_classes == 6
    assert set(train.class_ids.tolist()) == set(range(6))
    assert set(test.class_ids.tolist()) == set(range(6, 12))
    assert set(train.class_names).isdisjoint(test.class_names)
    assert test.labels.tolist() == np.repeat(np.arange(6), 6).tolist()
    image, label, index = test[9]
    assert image.shape == (1, 32, 32) == test.input_shape and (label, index) == (1, 9)
    raw = torch.from_numpy(test.images[9]).float() / 255
    assert torch.allclose(image[0], (raw - 0.5) / 0.5, atol=1e-6)
    assert test.image_path(0) is None and test.thumbnail(3, size=48).size == (48, 48)
    assert test.summary()["spec"]["num_classes"] == 12
    eval_train = build_dataset("glyphs", split="eval_train", **SMALL)
    assert torch.equal(eval_train[4][0], eval_train[4][0])
    images, labels, indices = next(iter(DataLoader(train, batch_size=8, shuffle=True)))
    assert images.shape == (8, 1, 32, 32) and labels.dtype == indices.dtype == torch.int64


def test_evaluation_splits_come_whole_equal_to_their_items() -> None:
    """``tensors()`` (the evaluation's fast path) equals the items one by one, for the glyph
    splits and a validation subset of them; a random or custom transform gives None."""
    for split in ("test", "eval_train"):
        dataset = build_dataset("glyphs", split=split, **SMALL)
        inputs, labels = dataset.tensors()
        assert torch.equal(inputs, torch.stack([dataset[i][0] for i in range(len(dataset))]))
        assert torch.equal(labels, torch.as_tensor(dataset.labels)) and labels.dtype == torch.int64
    subset = ClassSubset(dataset, [1, 4])
    inputs, labels = subset.tensors()
    assert torch.equal(inputs, torch.stack([subset[i][0] for i in range(len(subset))]))
    assert labels.tolist() == [subset[i][1] for i in range(len(subset))]
    assert build_dataset("glyphs", split="train", **SMALL).tensors() is None
    custom = build_dataset("glyphs", split="test", transform=lambda picture: picture, **SMALL)
    assert custom.tensors() is None and ClassSubset(custom, [0, 1]).tensors() is None


def test_disk_cache_written_and_read_back(private_cache: Path) -> None:
    spec = GlyphSpec(**SMALL)
    images, _ = load_glyphs(spec)
    cache_file = private_cache / f"glyphs_{spec.cache_key()}.npz"
    assert glyph_cache_dir() == private_cache and cache_file.is_file()
    assert load_glyphs(spec)[0] is images  # in-memory hit
    # Replace the cached pixels: a disk hit must return them instead of regenerating.
    spec_json = json.dumps(dataclasses.asdict(spec), sort_keys=True)
    marked = np.full_like(images, 7)
    atomic_save_npz(cache_file, images=marked, class_ids=np.zeros(72), spec=np.array(spec_json))
    clear_memory_cache()
    assert np.array_equal(load_glyphs(spec)[0], marked)


def test_cache_key_covers_every_field_and_bad_cache_regenerates(private_cache: Path) -> None:
    base = GlyphSpec(**SMALL)
    changed = []
    for field in dataclasses.fields(GlyphSpec):
        value = getattr(base, field.name)
        other = tuple(2 * v for v in value) if isinstance(value, tuple) else 2 * value + 1
        changed.append(dataclasses.replace(base, **{field.name: other}))
    keys = {spec.cache_key() for spec in changed}
    assert len(keys) == len(changed) and base.cache_key() not in keys
    private_cache.mkdir(parents=True)
    (private_cache / f"glyphs_{base.cache_key()}.npz").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable cache"):
        images, _ = load_glyphs(base)
    assert np.array_equal(images, generate_glyphs(base)[0])


def test_root_option_is_the_cache_folder(tmp_path: Path) -> None:
    build_dataset("glyphs", root=tmp_path / "elsewhere", **SMALL)
    assert len(list((tmp_path / "elsewhere").glob("glyphs_*.npz"))) == 1


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="unknown glyphs option"):
        build_dataset("glyphs", colour="red")
    with pytest.raises(ValueError, match="num_classes >= 4"):
        build_dataset("glyphs", num_classes=2)
