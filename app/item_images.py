"""Pictures of an opened split's items (:class:`app.sources.Opened`): a checkpoint's come from its
dataset (when it is on this machine), a file's from the image paths it names, and only from paths
that resolve under the allowed roots; otherwise the pages show index and class without pictures.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image

from app import analysis
from app.checkpoints import DATASET_ERRORS, split_dataset
from app.settings import allowed_roots
from app.sources import Opened

THUMBNAIL_PIXELS = 64

Thumbnail = Callable[[int, int], Image.Image | None]
"""``thumbnail(index, size)`` → the item's picture, or None."""


def thumbnail_getter(opened: Opened) -> Thumbnail | None:
    """Pictures of the opened items: a checkpoint's dataset thumbnails; a file's images where its
    paths resolve under the allowed roots (None when there are none: :func:`thumbnail_note`)."""
    if opened.kind == "checkpoint":
        return checkpoint_thumbnail(opened.config or {}, opened)
    record = opened.record
    if record.paths is None:
        return None
    roots = allowed_roots()
    allowed: list[Path | None] = []
    for index in range(len(record)):
        path = record.image_path(index)
        resolved = None if path is None else path.expanduser().resolve()
        inside = resolved is not None and any(resolved.is_relative_to(r) for r in roots)
        allowed.append(resolved if inside and resolved.is_file() else None)
    if not any(allowed):
        return None
    from dml_core.data.base import UNREADABLE_ERRORS, fit_thumbnail, load_rgb

    def thumbnail(index: int, size: int) -> Image.Image | None:
        path = allowed[int(index)]
        if path is None:
            return None
        try:
            return fit_thumbnail(load_rgb(path), size)
        except UNREADABLE_ERRORS:
            return None

    return thumbnail


def thumbnail_note(opened: Opened) -> str:
    """Why :func:`thumbnail_getter` has no pictures for ``opened``."""
    if opened.kind == "checkpoint":
        dataset = (opened.config or {}).get("dataset")
        return (
            f"Dataset {dataset!r} is not on this machine, so there are no thumbnails; everything "
            "else comes from the checkpoint."
        )
    if opened.record.paths is None:
        return "No thumbnails: the file names no image paths."
    return "No thumbnails: the file names no image paths under the allowed folders."


def checkpoint_thumbnail(config: dict, opened: Opened) -> Thumbnail | None:
    """The dataset's thumbnails of the opened items (ids are dataset indices); None when the
    dataset is not on this machine."""
    try:
        dataset = split_dataset(config, opened.split)
    except DATASET_ERRORS:
        return None
    ids = opened.record.item_ids()
    return lambda index, size: dataset.thumbnail(int(ids[int(index)]), size)


def image_uri_getter(thumbnail: Thumbnail | None) -> Callable[[int], str] | None:
    """``index → data URI`` of the item's thumbnail (a grey square where it has none)."""
    if thumbnail is None:
        return None
    blank = analysis.png_data_uri(Image.new("RGB", (8, 8), (200, 200, 200)))

    def uri(index: int) -> str:
        picture = thumbnail(int(index), THUMBNAIL_PIXELS)
        return blank if picture is None else analysis.png_data_uri(picture)

    return uri
