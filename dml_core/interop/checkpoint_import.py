"""Checkpoints trained elsewhere → this project's ``.safetensors`` checkpoints (docs/DESIGN.md §6).

Sources:

- the paper's official code (``torch.save({'state_dict', 'opt', 'progress', 'aux'})``: a ResNet50
  whose ``model.last_linear`` is the embedding layer, BatchNorm frozen and the output normalised
  when ``opt.arch`` says so, e.g. ``resnet50_frozen_normalize``), read through
  ``restricted_pickle.load_restricted``;
- plain state dicts (``.pth``/``.pt``, read with ``torch.load(weights_only=True)``, optionally
  under a ``state_dict`` or ``model`` key; or ``.safetensors``) of torchvision ResNets or of this
  project's architectures.

Keys are mapped onto ``EmbeddingModel`` by ``target_key``: ``module.`` (DataParallel) and ``model.``
prefixes are dropped, ``last_linear.*``/``fc.*`` become ``head.*``, everything else lies under
``backbone.``; ``layer_blocks.*`` (the official model's second reference to ``layer1…4``) and
``loss.*`` are ignored. The report lists matched, missing, unexpected and ignored keys; a shape
mismatch, a missing key or an unexpected key refuses the import (``allow_partial`` keeps going
for missing/unexpected keys, never for shapes).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import pickle
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dml_core.config import TrainConfig
from dml_core.engine.checkpoint import save_checkpoint
from dml_core.engine.header_schema import MAX_EMBED_DIM
from dml_core.interop import pml
from dml_core.interop.official import official_config, official_model_options
from dml_core.interop.restricted_pickle import load_restricted, refuse_torchscript
from dml_core.io import clean_stale_temp_files
from dml_core.models import ARCHS, EmbeddingModel, build_model

SECRET_FIELD = re.compile(r"key|token|secret|password", re.IGNORECASE)
DEFAULT_DATASET = {"mlp": "toy_diagonal", "small_cnn": "glyphs"}
"""Dataset recorded for a plain import when none is given (ResNets: ``imagefolder``)."""
SHOWN = 8


@dataclass(frozen=True)
class KeyMapping:
    """How the file's keys met the architecture's: target keys filled, target keys the file lacks,
    file keys the architecture has no place for, and file keys deliberately skipped."""

    matched: list[str]
    missing: list[str]
    unexpected: list[str]
    ignored: list[str]

    def summary(self) -> dict[str, Any]:
        return {
            "matched": len(self.matched),
            "missing": self.missing,
            "unexpected": self.unexpected,
            "ignored": len(self.ignored),
        }


@dataclass(frozen=True)
class ImportResult:
    """What ``import_checkpoint`` wrote and how the keys mapped."""

    out: Path
    source_format: str
    model_config: dict[str, Any]
    mapping: KeyMapping
    source: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """A JSON-ready report (what ``python -m dml_core import`` prints)."""
        return {
            "out": str(self.out),
            "format": self.source_format,
            **self.model_config,
            "keys": self.mapping.summary(),
            "files": self.source["file"],
            "sha256": self.source["sha256"],
            **({"warning": self.source["random_init"]} if "random_init" in self.source else {}),
        }


@dataclass(frozen=True)
class SourceCheckpoint:
    """A file's tensors and, for the official format, its ``opt`` as a dict."""

    state: dict[str, torch.Tensor]
    opt: dict[str, Any] | None
    source_format: str


def read_source(path: str | Path) -> SourceCheckpoint:
    """The state dict (and official ``opt``) of a ``.safetensors``, ``.pth``, ``.pt`` or ``.tar``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return SourceCheckpoint(load_file(str(path)), None, "safetensors")
        except SafetensorError as error:
            raise ValueError(f"{path} is not a readable safetensors file ({error})") from None
    refuse_torchscript(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError):
        loaded = load_restricted(path)  # holds more than tensors: read without running code
    state, opt = loaded, None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        state, opt = loaded["state_dict"], loaded.get("opt")
    elif isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        state = loaded["model"]
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{path} holds no state dict (expected a dict of tensors)")
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{path}: state dict entries that are not tensors: {not_tensors[:SHOWN]}")
    if isinstance(opt, argparse.Namespace):
        return SourceCheckpoint(dict(state), vars(opt), "official")
    return SourceCheckpoint(dict(state), None, "state_dict")


def target_key(key: str) -> str | None:
    """The ``EmbeddingModel`` key a file key maps to; None for keys that are skipped."""
    while key.startswith("module."):
        key = key.removeprefix("module.")
    if key.startswith("loss."):
        return None
    layer_block = re.match(r"layer_blocks\.(\d+)\.(.*)", key)
    if layer_block:  # the official model's ModuleList over model.layer1…4
        return f"backbone.layer{int(layer_block.group(1)) + 1}.{layer_block.group(2)}"
    key = key.removeprefix("model.")
    if key.startswith(("backbone.", "head.")):
        return key
    for classifier in ("last_linear.", "fc."):
        if key.startswith(classifier):
            return "head." + key.removeprefix(classifier)
    return "backbone." + key


def infer_arch(shapes: dict[str, tuple[int, ...]]) -> str:
    """The architecture the mapped keys describe (depth is then checked by the key mapping)."""
    if "backbone.layer1.0.conv3.weight" in shapes:
        return "resnet50"
    if "backbone.layer1.0.conv1.weight" in shapes:
        return "resnet18"
    first = shapes.get("backbone.0.weight")
    if first is not None:
        return "mlp" if len(first) == 2 else "small_cnn"
    raise ValueError(
        f"cannot tell the architecture from the keys; pass arch (--arch), one of {sorted(ARCHS)}"
    )


def map_state_dict(
    state: dict[str, torch.Tensor], model: torch.nn.Module, *, allow_partial: bool = False
) -> tuple[dict[str, torch.Tensor], KeyMapping]:
    """File tensors renamed to ``model``'s keys, and the report; refuses what does not fit."""
    expected = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    ignored, unexpected = [], []
    for key, value in state.items():
        target = target_key(key)
        if target is None:
            ignored.append(key)
        elif target not in expected:
            unexpected.append(key)
        elif target in mapped:
            if not torch.equal(mapped[target], value):
                raise ValueError(f"{key} maps onto {target} but differs from the tensor there")
            ignored.append(key)
        else:
            mapped[target] = value
    wrong_shapes = [
        f"{k} {tuple(v.shape)} in the file vs {tuple(expected[k].shape)}"
        for k, v in mapped.items()
        if v.shape != expected[k].shape
    ]
    if wrong_shapes:
        raise ValueError(
            f"shapes do not fit {getattr(model, 'arch', 'the architecture')}: "
            + "; ".join(wrong_shapes[:SHOWN])
        )
    missing = [k for k in expected if k not in mapped]
    # BatchNorm's step counter is absent from old files and unused with frozen statistics.
    required = [k for k in missing if not k.endswith("num_batches_tracked")]
    if (required or unexpected) and not allow_partial:
        raise ValueError(
            f"the file does not fit {getattr(model, 'arch', 'the architecture')}: missing keys "
            f"{required[:SHOWN]}, unexpected keys {unexpected[:SHOWN]} "
            "(allow_partial / --allow-partial imports anyway)"
        )
    mapping = KeyMapping(sorted(mapped), missing, unexpected, ignored)
    return mapped, mapping


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def json_safe_opt(opt: dict[str, Any]) -> dict[str, Any]:
    """``opt`` as JSON values; fields named like a key, token or password are redacted."""

    def safe(value: Any) -> Any:
        if value is None or isinstance(value, bool | int | str):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else str(value)
        if isinstance(value, list | tuple):
            return [safe(v) for v in value]
        if isinstance(value, dict):
            return {str(k): safe(v) for k, v in value.items()}
        return str(value)

    return {
        key: "<redacted>" if SECRET_FIELD.search(key) else safe(value)
        for key, value in sorted(opt.items())
    }


def plain_config(model: EmbeddingModel, dataset: str | None, data_root: str | None) -> TrainConfig:
    name = dataset or DEFAULT_DATASET.get(model.arch, "imagefolder")
    values: dict[str, Any] = {"dataset": name, "data_root": data_root, "pretrained": None}
    if model.arch.startswith("resnet"):
        values["image_size"] = 224
    values.update(model.config())
    values.pop("in_channels")
    return TrainConfig.from_dict(values)


def read_sources(
    sources: Sequence[Path], iteration: str | None
) -> tuple[SourceCheckpoint, list[Path]]:
    """One file as ``read_source``; a PML trunk and embedder, or a PML ``saved_models`` folder
    (``pml.find_pair`` at ``iteration``), merged into one state dict of format ``pml``."""
    if len(sources) == 1 and not Path(sources[0]).is_dir():
        if iteration is not None:
            raise ValueError("iteration (--iteration) picks files in a PML saved_models folder")
        return read_source(sources[0]), [Path(sources[0])]
    if len(sources) == 1:
        trunk, embedder = pml.find_pair(Path(sources[0]), iteration)
    elif len(sources) == 2:
        trunk, embedder = pml.order_pair(Path(sources[0]), Path(sources[1]))
    else:
        raise ValueError(f"expected one checkpoint or a PML trunk and embedder, got {len(sources)}")
    parts = [read_source(trunk), read_source(embedder)]
    if any(part.opt is not None for part in parts):
        raise ValueError("a checkpoint of the paper's official code is imported alone")
    state = pml.merge_pair(
        parts[0].state, parts[1].state, trunk_name=trunk.name, embedder_name=embedder.name
    )
    return SourceCheckpoint(state, None, "pml"), [trunk, embedder]


def random_parts(mapping: KeyMapping) -> str | None:
    """One line when ``allow_partial`` left trained parameters at their random initialisation."""
    missing = [k for k in mapping.missing if not k.endswith("num_batches_tracked")]
    parts = []
    for prefix, name in (("backbone.", "backbone"), ("head.", "embedding layer (head)")):
        total = len([k for k in mapping.matched + missing if k.startswith(prefix)])
        left = len([k for k in missing if k.startswith(prefix)])
        if left == total and left:
            parts.append(f"the {name} is entirely at random initialisation")
        elif left:
            parts.append(f"{left} of {total} {name} tensors are at random initialisation")
    return "; ".join(parts) + " (missing from the file)" if parts else None


def import_checkpoint(
    source: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    arch: str | None = None,
    normalize: bool | None = None,
    frozen_bn: bool | None = None,
    dataset: str | None = None,
    data_root: str | None = None,
    allow_partial: bool = False,
    iteration: str | None = None,
) -> ImportResult:
    """Convert ``source`` into a checkpoint at ``out`` that ``load_checkpoint`` and the app open.

    ``source``: one file; or a PML trunk and embedder (two files, or a ``saved_models`` folder
    with ``iteration``: ``best`` by default, ``latest``, ``N`` or ``bestN``). ``arch``: inferred
    from the keys when None. ``normalize``/``frozen_bn``: from ``opt.arch`` for official files,
    else True/True unless given. ``dataset``/``data_root``: recorded in the config so evaluation
    and the app can embed a split (official files: from ``opt``). ``allow_partial`` keeps going
    with missing keys, with a warning naming what stays random.
    """
    sources = [source] if isinstance(source, str | Path) else list(source)
    read, files = read_sources([Path(s) for s in sources], iteration)
    source = files[0] if len(files) == 1 else Path(sources[0])
    if Path(out).exists() and any(Path(out).samefile(f) for f in files):
        raise ValueError(f"{out} is the file being imported; write the import to another --out")
    shapes = {}
    for key, value in read.state.items():
        target = target_key(key)
        if target is not None:
            shapes[target] = tuple(value.shape)
    if read.opt is not None:
        options = official_model_options(read.opt, arch)
    else:
        options = {"arch": arch or infer_arch(shapes)}
    if normalize is not None:
        options["normalize"] = normalize
    if frozen_bn is not None:
        options["frozen_bn"] = frozen_bn
    head = shapes.get("head.weight")
    if head is None or len(head) != 2:
        raise ValueError(
            f"{source}: no embedding layer (fc, last_linear or head weight of shape (d, features)); "
            "a PML trunk is imported with its embedder: import TRUNK.pth EMBEDDER.pth"
        )
    embed_dim = head[0]
    if not 1 <= embed_dim <= MAX_EMBED_DIM or head[1] < 1:  # bounds before the model is built
        bound = f"(expected (d, features), d in 1 to {MAX_EMBED_DIM}, features >= 1)"
        raise ValueError(f"{source}: embedding layer of shape {head} {bound}")
    if read.opt is not None and read.opt.get("embed_dim") not in (None, embed_dim):
        raise ValueError(
            f"{source}: opt.embed_dim is {read.opt['embed_dim']} but last_linear gives {embed_dim}"
        )
    first_conv = shapes.get("backbone.0.weight")
    in_channels = first_conv[1] if options["arch"] == "small_cnn" and first_conv else 3
    if not 1 <= in_channels <= 64:
        raise ValueError(f"{source}: first layer takes {in_channels} channels (expected 1 to 64)")
    model = build_model(
        options["arch"],
        embed_dim,
        normalize=options.get("normalize", True),
        frozen_bn=options.get("frozen_bn", True),
        in_channels=in_channels,
    )
    mapped, mapping = map_state_dict(read.state, model, allow_partial=allow_partial)
    model.load_state_dict(mapped, strict=False)
    unmapped: dict[str, Any] = {}
    if read.opt is not None:
        config, unmapped = official_config(read.opt, model)
        if dataset is not None or data_root is not None:
            config = config.replace(
                **({"dataset": dataset} if dataset else {}),
                **({"data_root": data_root} if data_root else {}),
            )
    else:
        config = plain_config(model, dataset, data_root)
    files_read = [
        {"file": f.name, "sha256": file_sha256(f), "bytes": f.stat().st_size} for f in files
    ]
    provenance: dict[str, Any] = {
        "format": read.source_format,
        "file": " + ".join(f["file"] for f in files_read),
        "sha256": " + ".join(f["sha256"] for f in files_read),
        "bytes": sum(f["bytes"] for f in files_read),
        "key_mapping": {
            "matched": len(mapping.matched),
            "missing": mapping.missing,
            "unexpected": mapping.unexpected,
            "ignored": mapping.ignored,
        },
    }
    if len(files_read) > 1:
        provenance["files"] = files_read
    random_note = random_parts(mapping)
    if random_note:
        warnings.warn(f"{source}: {random_note}", stacklevel=2)
        provenance["random_init"] = random_note
    if read.opt is not None:
        provenance["opt"] = json_safe_opt(read.opt)
        provenance["unmapped"] = json_safe_opt(unmapped)
    epoch = read.opt.get("epoch") if read.opt is not None else None
    header = {
        "kind": "imported",
        "config": config.to_dict(),
        "model": model.config(),
        "dataset": {"name": config.dataset, "root": config.data_root, "classes": {}},
        "epoch": epoch if isinstance(epoch, int) else None,
        "step": None,
        "history": [],
        "best": {"metric": None, "value": None, "epoch": None},
        "selected_on": None,
        "source": provenance,
    }
    clean_stale_temp_files(out)  # what a killed import of the same --out left
    path = save_checkpoint(out, model, header)
    return ImportResult(path, read.source_format, model.config(), mapping, provenance)
