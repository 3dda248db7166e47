"""``glyphs``: an offline benchmark of procedural characters, deterministic in (seed, class, sample).

Each class is a fixed random set of 2–4 pen strokes (quadratic or cubic Bézier curves). Each sample
jitters the control points and applies a random rotation, scale, shift and stroke width, may add
distractor strokes, and adds pixel noise. Strokes are drawn with PIL at ``SUPERSAMPLING``× the
target size and box-downsampled (anti-aliasing); all geometry is vectorised with numpy. The
generated set is cached in memory and on disk (``$DML_EXPLORER_CACHE/glyphs`` or
``~/.cache/dml_explorer/glyphs``), keyed by every generation parameter.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from dml_core.data.base import DATASETS, DMLDataset, Item, Transform, check_split, class_half
from dml_core.data.transforms import default_transforms
from dml_core.io import atomic_save_npz

GENERATOR_VERSION = 1
SUPERSAMPLING = 3
MAX_STROKES = 4
CURVE_POINTS = 16
# Control points live in [-1, 1]²; that box maps to the central 80 % of the image.
GLYPH_EXTENT = 0.8
CLASS_STREAM, SAMPLE_STREAM = 0, 1

_MEMORY_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}

MAX_PIXELS_VARIABLE = "DML_EXPLORER_MAX_GLYPH_PIXELS"
DEFAULT_MAX_PIXELS = 2**28
"""num_classes · samples_per_class · image_size² at most (256 Mi pixels: 256 MiB of images, about
2.5 GiB at the peak of generation, which holds float32 noise and a float32 copy); the largest set
this project uses has 49 Mi. ``$DML_EXPLORER_MAX_GLYPH_PIXELS`` raises it."""
MAX_DISTRACTOR_STROKES = 64


def max_glyph_pixels() -> int:
    """The pixel bound: ``$DML_EXPLORER_MAX_GLYPH_PIXELS`` if set (a positive integer), else 2²⁸."""
    text = os.environ.get(MAX_PIXELS_VARIABLE)
    if text is None:
        return DEFAULT_MAX_PIXELS
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"{MAX_PIXELS_VARIABLE} must be a positive integer, got {text!r}")
    return int(text)


@dataclasses.dataclass(frozen=True)
class GlyphSpec:
    """Every parameter of a glyph set (all of them key the cache).

    ``difficulty`` multiplies the per-sample amplitudes: control-point jitter (std, in units of
    the half glyph box), rotation (± degrees), scale (1 ± scale_jitter), shift (± fraction of the
    image) and pixel noise (std). Stroke widths are fractions of the image size; each of the
    ``distractor_strokes`` short random strokes appears with probability 1/2. The defaults were
    tuned so a small 4-layer CNN with a triplet loss reaches test Recall@1 ≈ 0.5–0.6 after a few
    hundred steps of batch 112 (not trivially easy, not hopeless).
    """

    num_classes: int = 200
    samples_per_class: int = 40
    image_size: int = 64
    seed: int = 0
    difficulty: float = 1.0
    point_jitter: float = 0.16
    max_rotation_deg: float = 30.0
    scale_jitter: float = 0.3
    max_shift: float = 0.16
    stroke_width_range: tuple[float, float] = (0.035, 0.075)
    distractor_strokes: int = 1
    noise_std: float = 0.16

    def __post_init__(self) -> None:
        for spec_field in dataclasses.fields(self):
            value = getattr(self, spec_field.name)
            numbers = value if spec_field.name == "stroke_width_range" else (value,)
            wanted = int if spec_field.type == "int" else int | float
            if isinstance(numbers, str) or not all(
                isinstance(v, wanted) and not isinstance(v, bool) for v in numbers
            ):
                expected = "an integer" if wanted is int else "a number"
                raise ValueError(
                    f"glyphs option {spec_field.name} must be {expected}, got {value!r}"
                )
        if len(self.stroke_width_range) != 2:
            raise ValueError("glyphs option stroke_width_range must be two numbers (min, max)")
        if self.num_classes < 4 or self.samples_per_class < 2 or self.image_size < 8:
            raise ValueError(
                "glyphs needs num_classes >= 4, samples_per_class >= 2 and image_size >= 8; "
                f"got {self.num_classes}, {self.samples_per_class}, {self.image_size}"
            )
        if self.difficulty < 0 or self.distractor_strokes < 0:
            raise ValueError("glyph difficulty and distractor_strokes must be non-negative")
        if self.distractor_strokes > MAX_DISTRACTOR_STROKES:
            raise ValueError(
                f"glyphs option distractor_strokes must be at most {MAX_DISTRACTOR_STROKES}, "
                f"got {self.distractor_strokes}"
            )
        pixels = self.num_classes * self.samples_per_class * self.image_size**2
        if pixels > max_glyph_pixels():
            raise ValueError(
                f"glyphs set too large: num_classes·samples_per_class·image_size² = "
                f"{self.num_classes}·{self.samples_per_class}·{self.image_size}² = {pixels:.3g} "
                f"pixels, more than the {max_glyph_pixels()} allowed (set {MAX_PIXELS_VARIABLE} "
                "to raise the bound; generation needs about 10 bytes per pixel)"
            )

    def cache_key(self) -> str:
        """A short hash of every field plus the generator version."""
        fields = {**dataclasses.asdict(self), "generator_version": GENERATOR_VERSION}
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def bezier_basis(num_points: int) -> np.ndarray:
    """Cubic Bernstein basis B (num_points × 4): curve = B @ control_points, t evenly in [0, 1]."""
    t = np.linspace(0.0, 1.0, num_points)[:, None]
    return np.hstack([(1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t**2 * (1 - t), t**3])


def quadratic_as_cubic(points: np.ndarray) -> np.ndarray:
    """Degree elevation: quadratic (P0, P1, P2) → cubic (P0, P0+⅔(P1−P0), P2+⅔(P1−P2), P2)."""
    p0, p1, p2 = points[..., 0, :], points[..., 1, :], points[..., 2, :]
    return np.stack([p0, p0 + 2 / 3 * (p1 - p0), p2 + 2 / 3 * (p1 - p2), p2], axis=-2)


def class_strokes(spec: GlyphSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per class: cubic control points (C, MAX_STROKES, 4, 2) in [-1, 1]² and a stroke mask."""
    controls = np.empty((spec.num_classes, MAX_STROKES, 4, 2))
    active = np.zeros((spec.num_classes, MAX_STROKES), dtype=bool)
    for class_id in range(spec.num_classes):
        rng = np.random.default_rng([spec.seed, CLASS_STREAM, class_id])
        num_strokes = int(rng.integers(2, MAX_STROKES + 1))
        is_quadratic = rng.random(MAX_STROKES) < 0.5
        cubic = rng.uniform(-1.0, 1.0, (MAX_STROKES, 4, 2))
        controls[class_id] = np.where(
            is_quadratic[:, None, None], quadratic_as_cubic(cubic[:, :3]), cubic
        )
        active[class_id, :num_strokes] = True
    return controls, active


def sample_draws(spec: GlyphSpec) -> dict[str, np.ndarray]:
    """Per sample random numbers, each from its own stream seeded by (seed, class, sample)."""
    num = spec.num_classes * spec.samples_per_class
    size = spec.image_size
    draws = {
        "jitter": np.empty((num, MAX_STROKES, 4, 2)),
        "uniform": np.empty((num, 5)),
        "distractors": np.empty((num, spec.distractor_strokes, 4, 2)),
        "distractor_on": np.empty((num, spec.distractor_strokes), dtype=bool),
        "noise": np.empty((num, size, size), dtype=np.float32),
    }
    for row in range(num):
        class_id, sample_id = divmod(row, spec.samples_per_class)
        rng = np.random.default_rng([spec.seed, SAMPLE_STREAM, class_id, sample_id])
        draws["jitter"][row] = rng.standard_normal((MAX_STROKES, 4, 2))
        draws["uniform"][row] = rng.random(5)
        draws["distractors"][row] = rng.uniform(-1.0, 1.0, (spec.distractor_strokes, 4, 2))
        draws["distractor_on"][row] = rng.random(spec.distractor_strokes) < 0.5
        draws["noise"][row] = rng.standard_normal((size, size), dtype=np.float32)
    return draws


def sample_geometry(spec: GlyphSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Polylines in supersampled pixels (N, S, CURVE_POINTS, 2), stroke mask, widths, noise."""
    controls, active = class_strokes(spec)
    draws = sample_draws(spec)
    amount = spec.difficulty
    class_of_row = np.repeat(np.arange(spec.num_classes), spec.samples_per_class)
    points = controls[class_of_row] + amount * spec.point_jitter * draws["jitter"]
    # Distractors: short strokes (a quarter of the glyph box) at random places.
    distractor_centre = draws["distractors"][:, :, :1, :]
    distractors = distractor_centre + 0.25 * (draws["distractors"] - distractor_centre)
    points = np.concatenate([points, distractors], axis=1)
    stroke_on = np.concatenate([active[class_of_row], draws["distractor_on"]], axis=1)

    u = draws["uniform"]
    angle = np.deg2rad(amount * spec.max_rotation_deg * (2 * u[:, 0] - 1))
    scale = 1 + amount * spec.scale_jitter * (2 * u[:, 1] - 1)
    shift = amount * spec.max_shift * (2 * u[:, 2:4] - 1)
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    linear = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # (N, 2, 2)
    points = np.einsum("nij,nskj->nski", linear, points)
    polylines = np.einsum("tk,nskd->nstd", bezier_basis(CURVE_POINTS), points)

    canvas = spec.image_size * SUPERSAMPLING
    polylines = (polylines * GLYPH_EXTENT / 2 + 0.5 + shift[:, None, None, :]) * canvas
    low, high = spec.stroke_width_range
    widths = np.rint((low + (high - low) * u[:, 4]) * canvas).astype(np.int64).clip(min=1)
    noise = amount * spec.noise_std * draws["noise"]
    return polylines, stroke_on, widths, noise


def generate_glyphs(spec: GlyphSpec) -> tuple[np.ndarray, np.ndarray]:
    """Render the whole set: uint8 images (N, size, size) and class ids (N,), class-major order."""
    polylines, stroke_on, widths, noise = sample_geometry(spec)
    canvas = spec.image_size * SUPERSAMPLING
    images = np.empty((len(widths), spec.image_size, spec.image_size), dtype=np.uint8)
    for row in range(len(widths)):
        picture = Image.new("L", (canvas, canvas))
        pen = ImageDraw.Draw(picture)
        for stroke in np.flatnonzero(stroke_on[row]):
            pen.line(polylines[row, stroke].ravel().tolist(), fill=255, width=int(widths[row]))
        images[row] = np.asarray(picture.reduce(SUPERSAMPLING))
    noisy = images.astype(np.float32) / 255 + noise
    images = np.rint(np.clip(noisy, 0.0, 1.0) * 255).astype(np.uint8)
    class_ids = np.repeat(np.arange(spec.num_classes, dtype=np.int64), spec.samples_per_class)
    return images, class_ids


def glyph_cache_dir() -> Path:
    """``$DML_EXPLORER_CACHE/glyphs`` if set, else ``~/.cache/dml_explorer/glyphs``."""
    base = os.environ.get("DML_EXPLORER_CACHE")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "dml_explorer"
    return root / "glyphs"


def load_glyphs(
    spec: GlyphSpec, cache_dir: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The glyph set for ``spec``: from memory, else from the disk cache, else generated and cached."""
    key = spec.cache_key()
    if key in _MEMORY_CACHE:
        return _MEMORY_CACHE[key]
    path = Path(cache_dir or glyph_cache_dir()) / f"glyphs_{key}.npz"
    arrays = _read_cache(path, spec)
    if arrays is None:
        arrays = generate_glyphs(spec)
        spec_json = json.dumps(dataclasses.asdict(spec), sort_keys=True)
        atomic_save_npz(path, images=arrays[0], class_ids=arrays[1], spec=np.array(spec_json))
    _MEMORY_CACHE[key] = arrays
    return arrays


def _read_cache(path: Path, spec: GlyphSpec) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached arrays if ``path`` holds a readable set for exactly ``spec``, else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            same_spec = json.loads(str(stored["spec"])) == json.loads(
                json.dumps(dataclasses.asdict(spec))
            )
            arrays = stored["images"], stored["class_ids"]
    except (OSError, ValueError, KeyError) as error:
        warnings.warn(f"regenerating glyphs: unreadable cache {path} ({error})", stacklevel=3)
        return None
    return arrays if same_spec else None


def clear_memory_cache() -> None:
    """Forget in-memory glyph sets (the disk cache stays)."""
    _MEMORY_CACHE.clear()


@DATASETS.register("glyphs")
class GlyphsDataset(DMLDataset):
    """Procedural glyphs: first half of the classes train, second half test (zero-shot).

    The transform receives a greyscale PIL image (default: light random affine for train, then a
    float tensor (1, size, size) normalised from [0, 1] to [-1, 1]). ``root``, if given, is the
    cache folder. Other options are :class:`GlyphSpec` fields.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        transform: Transform | None = None,
        **options: Any,
    ) -> None:
        self.split = check_split(split)
        valid = {field.name for field in dataclasses.fields(GlyphSpec)}
        unknown = sorted(set(options) - valid)
        if unknown:
            raise ValueError(f"unknown glyphs option(s) {unknown}; valid: {sorted(valid)}")
        if "stroke_width_range" in options:
            options["stroke_width_range"] = tuple(options["stroke_width_range"])
        self.spec = GlyphSpec(**options)
        all_images, all_class_ids = load_glyphs(self.spec, root)
        class_ids = class_half(list(range(self.spec.num_classes)), split)
        keep = np.isin(all_class_ids, class_ids)
        self.images = all_images[keep]
        self.class_ids = all_class_ids[keep]
        self._set_labels(
            self.class_ids - class_ids[0], [f"glyph_{class_id:03d}" for class_id in class_ids]
        )
        self.transform = default_transforms("glyph", split) if transform is None else transform
        self.input_shape = (1, self.spec.image_size, self.spec.image_size)
        self._fixed_transform = transform is None and split != "train"

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The whole split at once, (N, 1, H, W) float32 and labels (N,) int64, equal to the items
        one by one, when the transform is the default deterministic one (not ``train``); else None.
        The default transform acts on a batch as on one image, so evaluation skips the loader."""
        if not self._fixed_transform:
            return None
        pictures = torch.from_numpy(self.images).unsqueeze(1)
        return self.transform(pictures), torch.from_numpy(self.labels.copy())

    def __getitem__(self, index: int) -> Item:
        picture = Image.fromarray(self.images[index])
        return self.transform(picture), int(self.labels[index]), index

    def thumbnail(self, index: int, size: int = 64) -> Image.Image:
        picture = Image.fromarray(self.images[index])
        return picture.resize((size, size), Image.Resampling.BILINEAR)

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "num_skipped": 0, "spec": dataclasses.asdict(self.spec)}
