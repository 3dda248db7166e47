"""PyTorch-Metric-Learning's saved models → one state dict in ``EmbeddingModel``'s keys.

PML keeps a *pair* per model: a ``trunk`` (a torchvision ResNet with ``fc = Identity``) and an
``embedder`` (its example ``MLP([features, d])``: ``net.0.*``, aliased as ``last_linear.*``), and
embeds x as normalise(embedder(trunk(x))) (its testers normalise by default). Its logging hook
saves them as ``trunk_<epoch>.pth``/``embedder_<epoch>.pth`` and the best as
``trunk_best<epoch>.pth``/``embedder_best<epoch>.pth`` in ``saved_models`` (PML's
``utils/common_functions.py``: ``modelpath_creator``, ``save_model`` (a plain ``state_dict``),
``latest_version``; ``utils/logging_presets.py``: ``save_models_and_eval``).

The trunk's keys go under ``backbone.``; the embedder's single linear layer becomes ``head``.
An embedder of several layers has no place in ``EmbeddingModel`` and is refused.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

SAVED_MODEL = re.compile(r"^(trunk|embedder)_(best)?(\d+)\.pth$")
"""PML's file names: ``<model>_<epoch>.pth`` and ``<model>_best<epoch>.pth``."""


def _saved_iterations(folder: Path) -> dict[str, set[str]]:
    """{``"12"`` or ``"best12"``: the models (trunk, embedder) saved at that iteration}."""
    found: dict[str, set[str]] = {}
    for path in folder.iterdir():
        match = SAVED_MODEL.match(path.name)
        if match and path.is_file():
            found.setdefault((match.group(2) or "") + match.group(3), set()).add(match.group(1))
    return found


def _number(iteration: str) -> int:
    return int(iteration.removeprefix("best"))


def find_pair(folder: Path, iteration: str | None = None) -> tuple[Path, Path]:
    """(trunk, embedder) files of a PML ``saved_models`` folder at ``iteration``: ``best`` (the
    default: the highest ``best<N>``, as PML's ``latest_version(best=True)``), ``latest`` (the
    highest plain N), ``N`` or ``bestN``."""
    saved = _saved_iterations(folder)
    pairs = sorted((i for i, models in saved.items() if len(models) == 2), key=_number)
    wanted = "best" if iteration is None else str(iteration)
    if wanted == "best":
        candidates = [i for i in pairs if i.startswith("best")]
    elif wanted == "latest":
        candidates = [i for i in pairs if not i.startswith("best")]
    else:
        candidates = [i for i in pairs if i == wanted]
    if not candidates:
        present = ", ".join(sorted(saved, key=lambda i: (i.startswith("best"), _number(i))))
        raise ValueError(
            f"{folder}: no trunk_/embedder_ pair for iteration {wanted!r} "
            f"(PML saved_models holding: {present or 'no trunk_*.pth or embedder_*.pth'}); "
            "pass --iteration best, latest, N or bestN"
        )
    chosen = candidates[-1]
    return folder / f"trunk_{chosen}.pth", folder / f"embedder_{chosen}.pth"


def order_pair(first: Path, second: Path) -> tuple[Path, Path]:
    """(trunk, embedder): as PML named them when both names say, else in the order given."""
    names = [SAVED_MODEL.match(p.name) for p in (first, second)]
    if all(names) and names[0].group(1) == "embedder" and names[1].group(1) == "trunk":
        return second, first
    return first, second


def _strip_parallel(key: str) -> str:
    while key.startswith("module."):
        key = key.removeprefix("module.")
    return key


def embedder_head(state: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """The embedder's one linear layer as ``head.weight``/``head.bias``; aliases of the same
    tensors (PML's ``last_linear`` is ``net[-1]``) count once."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        module, _, parameter = _strip_parallel(key).rpartition(".")
        modules.setdefault(module, {})[parameter] = value
    distinct: dict[str, dict[str, torch.Tensor]] = {}
    for module, tensors in modules.items():  # in the file's order: aliases come later
        same = [
            other
            for other, kept in distinct.items()
            if kept.keys() == tensors.keys()
            and all(torch.equal(kept[p], tensors[p]) for p in tensors)
        ]
        if not same:
            distinct[module] = tensors
    linear = [
        module
        for module, t in distinct.items()
        if set(t) <= {"weight", "bias"} and t.get("weight") is not None and t["weight"].dim() == 2
    ]
    if len(distinct) != 1 or len(linear) != 1:
        raise ValueError(
            f"embedder {name} has the layers {list(distinct)}: only an embedder of one linear "
            "layer (PML's MLP([features, d])) maps onto this project's head"
        )
    tensors = distinct[linear[0]]
    if "bias" not in tensors:
        raise ValueError(f"embedder {name}: its linear layer {linear[0]!r} has no bias")
    return {"head.weight": tensors["weight"], "head.bias": tensors["bias"]}


def merge_pair(
    trunk: dict[str, torch.Tensor],
    embedder: dict[str, torch.Tensor],
    *,
    trunk_name: str = "trunk",
    embedder_name: str = "embedder",
) -> dict[str, torch.Tensor]:
    """One state dict: the trunk's keys under ``backbone.`` (a classifier ``fc`` left in the trunk
    becomes an unexpected key), the embedder's linear layer as ``head``."""
    merged = {"backbone." + _strip_parallel(k): v for k, v in trunk.items()}
    merged.update(embedder_head(embedder, embedder_name))
    return merged
