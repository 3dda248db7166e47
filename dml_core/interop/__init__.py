"""Interoperability (docs/DESIGN.md §6): embedding files made elsewhere, checkpoints trained elsewhere,
and exports for TensorBoard, parquet and CSV.

- ``read_embeddings(path)`` → ``EmbeddingSet`` (``.npz``, ``.npy`` + labels, ``.parquet``, ``.csv``);
  ``evaluate_embeddings(record)`` → the metrics ``evaluate --checkpoint`` prints.
- ``import_checkpoint(src, out)`` → a ``.safetensors`` checkpoint from the paper's official code
  (restricted unpickling) or a plain state dict, with a key-mapping report.
- ``export(source, fmt, out_dir)`` → TensorBoard projector files, parquet or CSV.
"""

from dml_core.interop.embeddings_file import (
    EmbeddingSet,
    evaluate_embeddings,
    make_embedding_set,
    read_embeddings,
)
from dml_core.interop.export import (
    FORMATS,
    checkpoint_embeddings,
    export,
    export_embeddings,
    per_item_values,
)
from dml_core.interop.restricted_pickle import UnsafePickleError, load_restricted

__all__ = [
    "FORMATS",
    "EmbeddingSet",
    "ImportResult",
    "KeyMapping",
    "UnsafePickleError",
    "checkpoint_embeddings",
    "evaluate_embeddings",
    "export",
    "export_embeddings",
    "import_checkpoint",
    "load_restricted",
    "make_embedding_set",
    "per_item_values",
    "read_embeddings",
]

_IMPORTER = ("ImportResult", "KeyMapping", "import_checkpoint")


def __getattr__(name: str) -> object:
    """The checkpoint importer (torch and the models) is loaded on first use, so reading an
    embedding file (the app's Inspect page) never loads torch."""
    if name in _IMPORTER:
        from dml_core.interop import checkpoint_import

        return getattr(checkpoint_import, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
