"""The schema of a checkpoint's JSON document (docs/DESIGN.md §6), checked by ``read_metadata``
before anything is built from it, so the CLI and the app refuse the same files with the same line.

The fields readers use: ``model`` (``arch``, ``embed_dim`` in 1…``MAX_EMBED_DIM``, ``in_channels``
in 1…64, boolean flags), ``epoch``/``step`` counts or null, ``config`` a TrainConfig that
``TrainConfig.from_dict`` accepts and that names its dataset, ``history`` rows of numbers (or
null), ``best`` and ``dataset`` objects, ``dataset.classes`` lists of names.

The stored evaluation section (``evaluation_problem``, checked by ``read_evaluation``): its tensors
consistent per item, at least two classes and one class with two items, item ids unique dataset
indices in 0…2³¹−1, metrics numbers or null.
"""

from __future__ import annotations

from typing import Any

from dml_core.config import TrainConfig

MAX_EMBED_DIM = 65_536


def is_count(value: Any, low: int = 0, high: int | None = None) -> bool:
    """An int (not a bool) in ``low … high``."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value >= low
        and (high is None or value <= high)
    )


def document_problem(document: dict[str, Any]) -> str | None:
    """Why ``document`` does not fit the schema, as the rest of a sentence that starts with the
    file's path ("has embed_dim …"); None when it fits."""
    model = document.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("arch"), str):
        return "has no model architecture in its metadata"
    if not is_count(model.get("embed_dim"), 1, MAX_EMBED_DIM):
        return f"has embed_dim {model.get('embed_dim')!r} (expected 1 to {MAX_EMBED_DIM})"
    if "in_channels" in model and not is_count(model["in_channels"], 1, 64):
        return f"has in_channels {model['in_channels']!r} (expected 1 to 64)"
    for key in ("normalize", "frozen_bn"):
        if key in model and not isinstance(model[key], bool):
            return f"has model.{key} {model[key]!r} (expected true or false)"
    for key in ("epoch", "step"):  # null: unknown (an imported checkpoint)
        if document.get(key) is not None and not is_count(document[key]):
            return f"has {key} {document[key]!r} (expected a count or null)"
    for key, kind in (("config", dict), ("best", dict), ("dataset", dict), ("history", list)):
        if key in document and not isinstance(document[key], kind):
            return f"has a {key} that is not a JSON {kind.__name__}"
    for row in document.get("history", []):
        if not isinstance(row, dict):
            return "has history rows that are not JSON objects"
        for name, value in row.items():
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                shown = f"{str(name)[:80]!r} is {str(value)[:80]!r}"
                return f"has a history row whose {shown} (expected a number or null)"
    classes = document.get("dataset", {}).get("classes", {})
    if not isinstance(classes, dict) or not all(
        isinstance(names, list) and all(isinstance(n, str) for n in names)
        for names in classes.values()
    ):
        return "has dataset classes that are not lists of names"
    return config_problem(document.get("config"))


def config_problem(config: Any) -> str | None:
    """Why a checkpoint's ``config`` is not a run's TrainConfig (None when it is)."""
    if not config:
        return "has no training config (expected the TrainConfig of the run, with its dataset)"
    if not isinstance(config.get("dataset"), str):
        return "has a training config that names no dataset"
    try:
        TrainConfig.from_dict(config)
    except (ValueError, TypeError) as error:
        text = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return f"has a training config that is not valid ({text[:300]})"
    return None


MAX_ITEM_ID = 2**31 - 1
"""Stored item ids are dataset indices; no dataset the project builds comes near 2³¹ items."""
EVALUATION_TENSORS = ("embeddings", "labels", "item_ids", "pca")


def evaluation_problem(document: dict[str, Any], arrays: dict[str, Any]) -> str | None:
    """Why a checkpoint's stored evaluation section (its JSON ``document`` and its ``evaluation.*``
    tensors as numpy ``arrays``, names without the prefix) does not fit docs/DESIGN.md §6, as the
    rest of a sentence ("has …"); None when it fits. Every reader (``read_evaluation``: the app's
    Inspect and Compare, the CLI) refuses the same sections with the same words."""
    import numpy as np

    missing = sorted(set(EVALUATION_TENSORS) - arrays.keys())
    if missing:
        return f"lacks the tensors {missing}"
    embeddings, labels, ids = arrays["embeddings"], arrays["labels"], arrays["item_ids"]
    kinds = ((embeddings, "f", "embeddings"), (labels, "iu", "labels"), (ids, "iu", "item_ids"))
    for array, kind, name in kinds:
        if array.dtype.kind not in kind:
            return f"has {name} of dtype {array.dtype}"
    count = len(labels)
    if embeddings.ndim != 2 or embeddings.shape[0] != count or count == 0:
        return f"has embeddings of shape {embeddings.shape} for {count} labels"
    if not 1 <= embeddings.shape[1] <= MAX_EMBED_DIM:
        return f"has embed_dim {embeddings.shape[1]} (expected 1 to {MAX_EMBED_DIM})"
    for name in ("item_ids", "pca", "umap", "is_query", "is_gallery"):
        if name in arrays and (arrays[name].ndim < 1 or len(arrays[name]) != count):
            return f"has {len(arrays[name])} rows of {name} for {count} labels"
    for name in ("pca", "umap"):
        if name in arrays and (
            arrays[name].shape != (count, 2) or not np.isfinite(arrays[name]).all()
        ):
            return f"has a {name} layout that is not {count}×2 finite coordinates"
    if ("is_query" in arrays) != ("is_gallery" in arrays) or any(
        not np.isin(arrays[name], (0, 1)).all()
        for name in ("is_query", "is_gallery")
        if name in arrays
    ):
        return "has is_query/is_gallery that are not both there as 0/1 per item"
    if not np.isfinite(embeddings).all():
        return "has non-finite embeddings"
    class_names = document.get("class_names")
    if not isinstance(class_names, list) or not all(isinstance(n, str) for n in class_names):
        return "has class_names that are not a list of names"
    if labels.min() < 0 or labels.max() >= len(class_names):
        return "has labels outside its class names"
    classes, sizes = np.unique(labels, return_counts=True)
    if len(classes) < 2 or sizes.max() < 2:
        return (
            f"has {count} item(s) in {len(classes)} class(es) (expected at least two classes "
            "and one class with two items, so that a query can be scored)"
        )
    if ids.min() < 0 or ids.max() > MAX_ITEM_ID:
        return f"has item_ids up to {int(ids.max())} (expected dataset indices 0 to {MAX_ITEM_ID})"
    values, repeats = np.unique(ids, return_counts=True)
    if repeats.max() > 1:
        first = int(values[repeats.argmax()])
        return f"has item_ids that repeat (e.g. {first} appears {int(repeats.max())} times)"
    return _section_fields_problem(document)


def _section_fields_problem(document: dict[str, Any]) -> str | None:
    metrics = document.get("metrics") or {}
    if not isinstance(metrics, dict) or not all(
        value is None or (isinstance(value, int | float) and not isinstance(value, bool))
        for value in metrics.values()
    ):
        return "has metrics that are not numbers or null"
    if not isinstance(document.get("split", "test"), str):
        return "has a split that is not a name"
    if document.get("epoch") is not None and not is_count(document["epoch"]):
        return f"has epoch {document['epoch']!r} (expected a count or null)"
    return None
