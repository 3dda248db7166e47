"""Embeddings → files other tools open: TensorBoard's projector, parquet, CSV (docs/DESIGN.md §6).

``export(SOURCE, fmt, out_dir)`` takes a checkpoint (one split of its dataset is embedded) or an
embedding file (``read_embeddings``) and writes into ``out_dir``:

- ``tensorboard``: ``tensors.tsv`` (N rows of d tab-separated values), ``metadata.tsv`` (a header
  row, then one row per item: id, label, class_name, [split], [masks], [path], ap_at_r, hit_at_1),
  ``projector_config.pbtxt``, and ``sprite.png`` (thumbnails in row-major order, at most
  8192 × 8192 pixels) when the items have images. ``tensorboard --logdir OUT_DIR`` shows it.
- ``parquet`` (``embeddings.parquet``) / ``csv`` (``embeddings.csv``): one row per item with
  ``id``, ``label``, ``class_name``, ``path``, [``split``], [``is_query``, ``is_gallery``], the
  embedding (parquet: a list column ``embedding``; CSV: columns ``embedding_0 …``), ``pca_x``,
  ``pca_y``, ``ap_at_r``, ``hit_at_1``. ``read_embeddings`` opens both again.

The ``is_query``/``is_gallery`` columns (True/False) are written when the items have those masks
(the ``csv`` dataset's test split, an embedding file with them), in every format.

Per-query values come from the same kNN as the metrics (``retrieval_report``: leave-one-out, or
queries against the gallery under the masks), within each item's split: ``ap_at_r`` is the query's
AP@R, ``hit_at_1`` is 1 when its nearest other item shares its class; both are empty (NaN) for lone
queries, which the metrics exclude, and for items that are not queries. Their means over the
non-empty rows are MAP@R and Recall@1.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dml_core.interop.embeddings_file import EmbeddingSet, read_embeddings
from dml_core.metrics import retrieval_report

FORMATS = ("tensorboard", "parquet", "csv")
SPRITE_MAX_SIDE = 8192
"""TensorBoard's projector refuses sprites larger than this (pixels per side)."""
EXPORT_FILES = {
    "tensors.tsv",
    "metadata.tsv",
    "projector_config.pbtxt",
    "sprite.png",
    "embeddings.parquet",
    "embeddings.csv",
}
"""What an export folder may hold: every file any format writes (the folder is replaced whole)."""
THUMBNAIL_SIZE = 64
MIN_THUMBNAIL_SIZE = 8
UNREADABLE_GREY = (128, 128, 128)

Thumbnail = Callable[[int, int], Image.Image | None]
"""``thumbnail(index, size)`` → a ``size``×``size`` picture of item ``index`` or None."""


@dataclass(frozen=True)
class PerItem:
    """What the exports add to each item: 2-D PCA coordinates, AP@R and hit@1 (NaN: lone)."""

    coordinates: np.ndarray
    average_precision_at_r: np.ndarray
    hit_at_1: np.ndarray


def pca_2d(embeddings: np.ndarray) -> np.ndarray:
    """First two principal components (N, 2): X_c = X − mean = U S Vᵀ, coordinates X_c V[:, :2],
    each axis signed so its largest-magnitude loading is positive (deterministic)."""
    centred = np.asarray(embeddings, dtype=np.float64)
    centred = centred - centred.mean(axis=0, keepdims=True)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    axes = np.zeros((centred.shape[1], 2))
    axes[:, : min(2, components.shape[0])] = components[:2].T
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(2)])
    signs[signs == 0] = 1.0
    return (centred @ (axes * signs)).astype(np.float32)


def per_item_values(record: EmbeddingSet) -> PerItem:
    """PCA coordinates over all items; AP@R and hit@1 from each split's leave-one-out kNN."""
    average_precision = np.full(len(record), np.nan)
    hit_at_1 = np.full(len(record), np.nan)
    splits = record.split if record.split is not None else np.full(len(record), "test")
    for name in record.split_names():
        rows = np.flatnonzero(splits == name)
        labels = record.labels[rows]
        if len(np.unique(labels)) < 2:
            continue  # no retrieval within a one-class split
        protocol = {
            name: None if getattr(record, name) is None else getattr(record, name)[rows]
            for name in ("is_query", "is_gallery")
        }
        report = retrieval_report(
            record.embeddings[rows], labels, ks=(1,), keep_neighbors=1, **protocol
        )
        lone = np.isnan(report.average_precision_at_r)
        nearest = report.neighbor_indices[:, 0]
        hits = (labels[nearest] == labels).astype(np.float64)
        hits[lone] = np.nan
        average_precision[rows] = report.average_precision_at_r
        hit_at_1[rows] = hits
    return PerItem(pca_2d(record.embeddings), average_precision, hit_at_1)


def file_thumbnail(record: EmbeddingSet) -> Thumbnail | None:
    """Thumbnails from the record's image paths (grey for unreadable files); None without paths."""
    if record.paths is None or not any(record.paths):
        return None
    from dml_core.data.base import UNREADABLE_ERRORS, fit_thumbnail, load_rgb

    def thumbnail(index: int, size: int) -> Image.Image | None:
        path = record.image_path(index)
        if path is None:
            return None
        try:
            return fit_thumbnail(load_rgb(path), size)
        except (*UNREADABLE_ERRORS, FileNotFoundError):
            return None

    return thumbnail


def export_embeddings(
    record: EmbeddingSet,
    fmt: str,
    out_dir: str | Path,
    *,
    thumbnail: Thumbnail | None = None,
) -> list[Path]:
    """Write ``record`` as ``fmt`` into ``out_dir``; returns the files written.

    The set is written into a staging folder that then replaces ``out_dir`` whole
    (``io.replace_folder``): a kill mid-write leaves the previous export, never a mix; a folder
    holding files that no export writes is refused.

    ``thumbnail`` draws the sprite for ``tensorboard`` (default: from the record's image paths).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    from dml_core.io import replace_folder

    values = per_item_values(record)

    def write(out: Path) -> list[Path]:
        if fmt == "tensorboard":
            return _write_projector(record, values, out, thumbnail or file_thumbnail(record))
        if fmt == "parquet":
            return [_write_parquet(record, values, out / "embeddings.parquet")]
        return [_write_csv(record, values, out / "embeddings.csv")]

    return replace_folder(out_dir, write, EXPORT_FILES)


def export(
    source: str | Path,
    fmt: str,
    out_dir: str | Path,
    *,
    split: str = "test",
    data_root: str | None = None,
    device: str = "auto",
    labels: str | Path | None = None,
) -> list[Path]:
    """Export a checkpoint's ``split`` (``.safetensors``) or an embedding file (``labels``: the
    labels file of a ``.npy``)."""
    source = Path(source)
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if source.suffix == ".safetensors":
        record, thumbnail = checkpoint_embeddings(source, split, data_root=data_root, device=device)
        return export_embeddings(record, fmt, out_dir, thumbnail=thumbnail)
    return export_embeddings(read_embeddings(source, labels), fmt, out_dir)


def checkpoint_embeddings(
    path: str | Path, split: str = "test", *, data_root: str | None = None, device: str = "auto"
) -> tuple[EmbeddingSet, Thumbnail]:
    """Embed ``split`` of a checkpoint's dataset: the record (ids = dataset indices, class
    names, image paths where files exist) and a thumbnail function over the same items."""
    from dml_core.config import TrainConfig
    from dml_core.data.splits import build_split
    from dml_core.engine.checkpoint import load_checkpoint
    from dml_core.engine.evaluation import compute_embeddings, query_gallery, resolve_device
    from dml_core.interop.embeddings_file import make_embedding_set

    torch_device = resolve_device(device)
    model, metadata = load_checkpoint(path, device=torch_device)
    config = TrainConfig.from_dict(metadata["config"])
    dataset = build_split(config, split, data_root)
    embeddings, labels, kept = compute_embeddings(
        model,
        dataset,
        device=torch_device,
        batch_size=config.eval_batch_size,
        amp=config.amp,
        return_indices=True,
    )
    kept = np.asarray(kept)
    is_query, is_gallery = query_gallery(dataset, kept)
    paths = [dataset.image_path(int(i)) or "" for i in kept]
    record = make_embedding_set(
        embeddings.float().cpu().numpy(),
        labels,
        class_names=list(dataset.class_names),
        ids=kept,
        paths=paths if any(paths) else None,
        split=split,
        is_query=is_query,
        is_gallery=is_gallery,
    )

    def thumbnail(index: int, size: int) -> Image.Image | None:
        return dataset.thumbnail(int(kept[index]), size=size)

    return record, thumbnail


# --- writers ---------------------------------------------------------------------------------


def _number(value: float) -> str:
    """Shortest text that reads back to the same float32 (empty for NaN)."""
    return "" if math.isnan(value) else str(np.float32(value))


def _rows(record: EmbeddingSet) -> list[dict[str, object]]:
    """The per-item columns shared by every format (embedding and coordinates apart)."""
    ids = record.item_ids()
    rows = []
    for i in range(len(record)):
        row: dict[str, object] = {
            "id": str(ids[i]),
            "label": int(record.labels[i]),
            "class_name": record.class_names[int(record.labels[i])],
            "path": "" if record.paths is None else str(record.paths[i]),
        }
        if record.split is not None:
            row["split"] = str(record.split[i])
        for name in ("is_query", "is_gallery"):
            if getattr(record, name) is not None:
                row[name] = bool(getattr(record, name)[i])
        rows.append(row)
    return rows


def _write_parquet(record: EmbeddingSet, values: PerItem, path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dml_core.io import atomic_write

    rows = _rows(record)
    columns: dict[str, pa.Array] = {name: pa.array([row[name] for row in rows]) for name in rows[0]}
    flat = pa.array(record.embeddings.reshape(-1), type=pa.float32())
    columns["embedding"] = pa.FixedSizeListArray.from_arrays(flat, record.dim).cast(
        pa.list_(pa.float32())
    )
    columns["pca_x"] = pa.array(values.coordinates[:, 0], type=pa.float32())
    columns["pca_y"] = pa.array(values.coordinates[:, 1], type=pa.float32())
    for name, column in (("ap_at_r", values.average_precision_at_r), ("hit_at_1", values.hit_at_1)):
        columns[name] = pa.array(column, type=pa.float64(), mask=np.isnan(column))
    table = pa.table(columns)
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def _write_csv(record: EmbeddingSet, values: PerItem, path: Path) -> Path:
    from dml_core.io import atomic_write

    rows = _rows(record)
    header = [*rows[0], *(f"embedding_{j}" for j in range(record.dim))]
    header += ["pca_x", "pca_y", "ap_at_r", "hit_at_1"]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for i, row in enumerate(rows):
                numbers = [*record.embeddings[i], *values.coordinates[i]]
                numbers += [values.average_precision_at_r[i], values.hit_at_1[i]]
                writer.writerow([*row.values(), *(_number(v) for v in numbers)])

    return atomic_write(path, write)


def _tsv_field(value: object) -> str:
    return str(value).replace("\t", " ").replace("\n", " ").replace("\r", " ")


def _write_projector(
    record: EmbeddingSet, values: PerItem, out: Path, thumbnail: Thumbnail | None
) -> list[Path]:
    from dml_core.io import atomic_write_bytes

    tensors = "\n".join("\t".join(_number(v) for v in row) for row in record.embeddings) + "\n"
    rows = _rows(record)
    columns = [name for name in rows[0] if name != "path" or record.paths is not None]
    lines = ["\t".join([*columns, "ap_at_r", "hit_at_1"])]
    for i, row in enumerate(rows):
        fields = [_tsv_field(row[name]) for name in columns]
        fields += [_number(values.average_precision_at_r[i]), _number(values.hit_at_1[i])]
        lines.append("\t".join(fields))
    written = [
        atomic_write_bytes(out / "tensors.tsv", tensors.encode()),
        atomic_write_bytes(out / "metadata.tsv", ("\n".join(lines) + "\n").encode()),
    ]
    sprite = _sprite(len(record), thumbnail)
    config = [
        "embeddings {",
        '  tensor_name: "embeddings"',
        '  tensor_path: "tensors.tsv"',
        '  metadata_path: "metadata.tsv"',
    ]
    if sprite is not None:
        image, size = sprite
        written.append(atomic_write_bytes(out / "sprite.png", _png(image)))
        config += [
            "  sprite {",
            '    image_path: "sprite.png"',
            f"    single_image_dim: {size}",
            f"    single_image_dim: {size}",
            "  }",
        ]
    config.append("}")
    written.append(
        atomic_write_bytes(out / "projector_config.pbtxt", ("\n".join(config) + "\n").encode())
    )
    return written


def _sprite(num_items: int, thumbnail: Thumbnail | None) -> tuple[Image.Image, int] | None:
    """A square grid of thumbnails (row-major, grey where an item has none), or None when there
    are no images or too many items for thumbnails of at least ``MIN_THUMBNAIL_SIZE`` pixels."""
    if thumbnail is None:
        return None
    per_side = math.ceil(math.sqrt(num_items))
    size = min(THUMBNAIL_SIZE, SPRITE_MAX_SIDE // per_side)
    if size < MIN_THUMBNAIL_SIZE:
        return None
    sheet = Image.new("RGB", (per_side * size, per_side * size), UNREADABLE_GREY)
    for index in range(num_items):
        picture = thumbnail(index, size)
        if picture is None:
            continue
        if picture.size != (size, size):
            picture = picture.resize((size, size))
        row, column = divmod(index, per_side)
        sheet.paste(picture.convert("RGB"), (column * size, row * size))
    return sheet, size


def _png(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
