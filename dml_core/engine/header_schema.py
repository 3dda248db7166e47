"""The schema of a checkpoint's JSON document (docs/DESIGN.md §6), checked by ``read_metadata``
before anything is built from it, so the CLI and the app refuse the same files with the same line.

The fields readers use: ``model`` (``arch``, ``embed_dim`` in 1…``MAX_EMBED_DIM``, ``in_channels``
in 1…64, boolean flags), ``epoch``/``step`` counts or null, ``config`` a TrainConfig that
``TrainConfig.from_dict`` accepts and that names its dataset, ``history`` rows of numbers (or
null), ``best`` and ``dataset`` objects, ``dataset.classes`` lists of names.
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
