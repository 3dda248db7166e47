"""Default transforms: the paper's photo pipeline and a light augmentation for glyphs.

Photos (Roth et al., ICML 2020, sec. 5 / official code): train = RandomResizedCrop(224) +
RandomHorizontalFlip, test = Resize(256) + CenterCrop(224), ImageNet mean/std normalisation.
Other sizes keep the 256/224 ratio unless ``resize_size`` is given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GLYPH_MEAN = (0.5,)
GLYPH_STD = (0.5,)
TRANSFORM_KINDS = ("photo", "glyph")

PHOTO_CROP_SIZE = 224
PHOTO_RESIZE_RATIO = 256 / 224
GLYPH_MAX_ROTATION_DEG = 8.0
GLYPH_MAX_TRANSLATE = 0.05
GLYPH_SCALE_RANGE = (0.92, 1.08)


def default_transforms(
    kind: str,
    split: str,
    image_size: int | None = None,
    resize_size: int | None = None,
) -> Callable[[Any], torch.Tensor]:
    """The default transform for a data ``kind`` ("photo" or "glyph") and ``split``.

    "photo" takes an RGB PIL image and returns a normalised float tensor (3, S, S), S = image_size
    (default 224). "glyph" takes a greyscale PIL image and returns a float tensor (1, H, W): train
    adds a small random affine, every split maps [0, 1] to [-1, 1]. ``eval_train`` uses the test
    transform.
    """
    if kind not in TRANSFORM_KINDS:
        raise ValueError(
            f"unknown transform kind {kind!r}; valid kinds: {', '.join(TRANSFORM_KINDS)}"
        )
    if split not in ("train", "test", "eval_train"):
        raise ValueError(f"unknown split {split!r}; valid splits: train, test, eval_train")
    if kind == "glyph":
        return glyph_transform(train=split == "train")
    return photo_transform(train=split == "train", crop_size=image_size, resize_size=resize_size)


def photo_transform(
    train: bool, crop_size: int | None = None, resize_size: int | None = None
) -> v2.Compose:
    """The paper's photo transform for a crop of ``crop_size`` (default 224)."""
    crop_size = crop_size or PHOTO_CROP_SIZE
    to_normalised_tensor = [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        v2.ToPureTensor(),
    ]
    if train:
        geometry = [v2.RandomResizedCrop(crop_size), v2.RandomHorizontalFlip()]
    else:
        resize_size = resize_size or round(crop_size * PHOTO_RESIZE_RATIO)
        geometry = [v2.Resize(resize_size), v2.CenterCrop(crop_size)]
    return v2.Compose([*geometry, *to_normalised_tensor])


def glyph_transform(train: bool) -> v2.Compose:
    """Glyph transform on a greyscale PIL image: light random affine when training (on the PIL
    image, which is much cheaper than a threaded tensor warp), then [0, 1] → (x − 0.5) / 0.5."""
    geometry: list[Callable[[Any], Any]] = []
    if train:
        geometry.append(
            v2.RandomAffine(
                degrees=GLYPH_MAX_ROTATION_DEG,
                translate=(GLYPH_MAX_TRANSLATE, GLYPH_MAX_TRANSLATE),
                scale=GLYPH_SCALE_RANGE,
                interpolation=v2.InterpolationMode.BILINEAR,
            )
        )
    return v2.Compose(
        [
            *geometry,
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(GLYPH_MEAN, GLYPH_STD),
            v2.ToPureTensor(),
        ]
    )
