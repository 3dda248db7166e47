"""Reading parquet and CSV embedding tables (the layouts ``embeddings_file`` documents).

``read_table`` finds the ``label`` column, the optional item columns and the embedding, stored as
one list column ``embedding`` or as numbered columns under one prefix (``e0 … e127``,
``embedding_0 …``, pandas' ``0 … 127``), and returns raw arrays for ``make_embedding_set``, which
validates them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

ITEM_COLUMNS = ("id", "label", "class_name", "path", "split", "is_query", "is_gallery")
DERIVED_COLUMNS = ("pca_x", "pca_y", "ap_at_r", "hit_at_1")
"""Columns ``export`` adds; ignored when such a file is read back."""
LIST_COLUMN = "embedding"
SHOWN = 5


def parse_text_labels(values: list[str]) -> np.ndarray:
    """Integers when every value is one, else the strings."""
    try:
        return np.array([int(value) for value in values], dtype=np.int64)
    except ValueError:
        return np.array(values, dtype=str)


def read_table(path: Path) -> dict[str, Any]:
    """A parquet or CSV table → the arguments ``make_embedding_set`` takes (without ``source``)."""
    import pyarrow as pa

    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as error:
            raise ValueError(f"not a readable parquet file ({error})") from None
    else:
        import pyarrow.csv as pacsv

        text_columns = {name: pa.string() for name in ITEM_COLUMNS}
        options = pacsv.ConvertOptions(column_types=text_columns, strings_can_be_null=False)
        try:
            table = pacsv.read_csv(path, convert_options=options)
        except (OSError, pa.ArrowException) as error:
            raise ValueError(f"not a readable CSV file ({error})") from None
    columns = table.column_names
    if "label" not in columns:
        raise ValueError(f"no 'label' column; columns are {columns[:12]}")
    matrix = _table_embeddings(table)
    raw_labels = table.column("label").to_pylist()
    if any(value is None or value == "" for value in raw_labels):
        raise ValueError("the 'label' column has empty cells")
    if pa.types.is_string(table.schema.field("label").type):
        labels = parse_text_labels(raw_labels)
    else:
        labels = np.asarray(raw_labels)
    class_names = None
    if "class_name" in columns:
        labels, class_names = _labels_with_names(labels, table.column("class_name").to_pylist())

    def optional(name: str) -> list | None:
        """A text column, or None when it is absent or every cell is empty."""
        if name not in columns:
            return None
        values = ["" if v is None else str(v) for v in table.column(name).to_pylist()]
        return values if any(values) else None

    def flags(name: str) -> list | None:
        """A boolean column as its cells (booleans or text), or None when it is absent."""
        return table.column(name).to_pylist() if name in columns else None

    return {
        "embeddings": matrix,
        "labels": labels,
        "class_names": class_names,
        "ids": optional("id"),
        "paths": optional("path"),
        "split": optional("split"),
        "is_query": flags("is_query"),
        "is_gallery": flags("is_gallery"),
    }


def _labels_with_names(labels: np.ndarray, names: list) -> tuple[np.ndarray, list[str]]:
    """Labels and a per-row ``class_name`` column → class indices and one name per class."""
    originals = np.unique(labels)
    index = np.searchsorted(originals, labels)
    by_class: dict[int, str] = {}
    for position, name in zip(index.tolist(), names, strict=True):
        name = "" if name is None else str(name)
        if by_class.setdefault(position, name) != name:
            raise ValueError(
                f"label {originals[position].item()!r} has two class names: "
                f"{by_class[position]!r} and {name!r}"
            )
    return index, [by_class[k] or str(originals[k]) for k in range(len(originals))]


def _table_embeddings(table: object) -> np.ndarray:
    """The (N, d) matrix of a table: its ``embedding`` list column or its numbered columns."""
    columns = [c for c in table.column_names if c not in ITEM_COLUMNS + DERIVED_COLUMNS]
    numbered = _numbered_columns(columns)
    if LIST_COLUMN in columns:
        if numbered:
            raise ValueError(
                f"both a list column 'embedding' and numbered columns {numbered[:3]}…; keep one"
            )
        return _list_column(table.column(LIST_COLUMN).to_pylist())
    if not numbered:
        raise ValueError(
            "no embedding columns: expected a list column 'embedding' or numbered columns "
            f"such as e0, e1, … (one prefix, numbered from 0); columns are {table.column_names[:12]}"
        )
    values = [table.column(name).to_pylist() for name in numbered]
    if any(v is None for column in values for v in column):
        raise ValueError("the embedding columns have empty cells (NaN rows are not allowed)")
    try:
        return np.array(values, dtype=np.float64).T
    except (TypeError, ValueError):
        raise ValueError(
            f"embedding columns must hold numbers; {numbered[0]!r} holds "
            f"{type(values[0][0]).__name__}"
        ) from None


def _numbered_columns(columns: list[str]) -> list[str]:
    """Columns named ``<prefix><n>`` (optional ``_``), n = 0 … d−1 under one prefix, in order."""
    groups: dict[str, dict[int, str]] = {}
    for name in columns:
        match = re.fullmatch(r"(.*?)_?(\d+)", name)
        if match:
            groups.setdefault(match.group(1), {})[int(match.group(2))] = name
    complete = {p: g for p, g in groups.items() if sorted(g) == list(range(len(g)))}
    if len(complete) > 1:
        raise ValueError(
            f"numbered columns under several prefixes {sorted(complete)}; the embedding must "
            "use one prefix"
        )
    if not complete:
        return []
    (group,) = complete.values()
    return [group[i] for i in range(len(group))]


def _list_column(rows: list) -> np.ndarray:
    parsed = []
    for position, row in enumerate(rows):
        if row is None:
            raise ValueError(f"row {position} has no embedding")
        if isinstance(row, str):
            text = row.strip().removeprefix("[").removesuffix("]")
            try:
                row = [float(part) for part in re.split(r"[,\s]+", text.strip()) if part]
            except ValueError:
                raise ValueError(
                    f"row {position}: cannot read the embedding {row[:40]!r} as numbers"
                ) from None
        parsed.append(row)
    lengths = {len(row) for row in parsed}
    if len(lengths) > 1:
        raise ValueError(f"embeddings differ in length across rows: {sorted(lengths)[:SHOWN]}")
    try:
        return np.array(parsed, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("the 'embedding' column must hold lists of numbers") from None
