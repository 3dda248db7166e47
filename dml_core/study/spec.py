"""A study file (YAML) → a validated ``StudySpec``: which runs a study trains and how it compares them.

A study is the paper's fair-comparison protocol (Roth et al., ICML 2020, §4; docs/DESIGN.md §5) for
any set of methods: one base configuration (a ``preset`` plus ``overrides``), methods that differ
only in the fields they name, several seeds, one selection metric on validation classes, and the
trainer's own stopping rule (``dml_core.engine.stopping``) up to an epoch cap. Everything is
checked before anything trains: an unknown key, an unknown method field, a duplicate method name,
a seed that is not an integer, a selection metric the runs would not record, or a method whose
full ``TrainConfig`` is invalid is one ``StudyError`` line. Relative paths in the file are taken
from the file's own folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from dml_core import __version__
from dml_core.config import TrainConfig, checked_fields, selectable_metrics
from dml_core.presets import PRESETS

SPLITS = ("val", "test")


class StudyError(ValueError):
    """A study file, or a study folder, that cannot be used as it is (one line)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise StudyError(f"line {key_node.start_mark.line + 1}: {key!r} is given twice")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


@dataclass(frozen=True)
class Stopping:
    """The trainer's ``early_stop`` rule (``dml_core.engine.stopping.should_stop``)."""

    min_epochs: int = 0
    last_fraction: float = 0.25
    min_delta: float = 0.0
    from_recovery: bool = False


@dataclass(frozen=True)
class Comparisons:
    """What the page compares (``claims.py``)."""

    target: str = "test/recall@1"
    alike: tuple[str, ...] = ()
    equivalence_margin: float = 0.02
    rho_pairs: tuple[tuple[str, str], ...] = ()
    extra_rho_pairs: tuple[tuple[str, str], ...] = ()
    correlations: dict[str, str] = field(default_factory=dict)
    """train-split metric → the sign the paper reports ("negative" or "positive")."""
    context_metrics: tuple[str, ...] = ()
    paper_correlations: dict[str, float] = field(default_factory=dict)
    sampling_error: float = 0.0
    """Standard error of the selection metric (``bench/val_sampling_error.py``): a run at the cap
    whose last-quarter gain exceeds it counts as not converged (0: no such rule)."""
    rules: int = 2
    """Verdict rules: 2 (``rules.py``, the default) or 1 (``claims.py``, the first glyphs study)."""


@dataclass(frozen=True)
class PageText:
    title: str = ""
    introduction: str = ""
    description: str = ""
    caveat: str = ""
    appendix: str = ""


@dataclass(frozen=True)
class Method:
    name: str
    fields: dict[str, Any]
    seeds: tuple[int, ...]
    epochs: int | None = None
    """The method's own epoch cap (one that converges more slowly); None: the study's."""


@dataclass(frozen=True)
class StudySpec:
    """A validated study file; ``config(method, seed)`` is the full TrainConfig of one run."""

    path: Path
    name: str
    preset: str | None
    overrides: dict[str, Any]
    methods: dict[str, Method]
    seeds: tuple[int, ...]
    selection_metric: str
    stopping: Stopping
    epochs: int
    comparisons: Comparisons
    page: PageText
    runs_dir: Path
    summaries_dir: Path

    def cap(self, method: str) -> int:
        """The epoch cap of ``method``'s runs: its own, else the study's."""
        return self.methods[method].epochs or self.epochs

    def own_caps(self) -> dict[str, int]:
        """The methods whose cap differs from the study's, with their cap."""
        return {name: self.cap(name) for name in self.methods if self.cap(name) != self.epochs}

    def protocol_fields(self, method: str) -> dict[str, Any]:
        """The TrainConfig fields the study sets for ``method`` (all but the seed), in the order
        overrides < method fields < the protocol's own (cap, selection, stopping rule)."""
        metric = self.selection_metric.split("/", 1)[1]
        fields = {**self.overrides, **self.methods[method].fields}
        fields.update(
            epochs=self.cap(method),
            best_metric=metric,
            early_stop=True,
            early_stop_min_epochs=self.stopping.min_epochs,
            early_stop_fraction=self.stopping.last_fraction,
            early_stop_min_delta=self.stopping.min_delta,
            early_stop_from_recovery=self.stopping.from_recovery,
        )
        return fields

    def config(self, method: str, seed: int) -> TrainConfig:
        base = dict(PRESETS[self.preset]) if self.preset else {}
        return TrainConfig.from_dict({**base, **self.protocol_fields(method), "seed": seed})

    def protocol_hash(self, method: str) -> str:
        """SHA-256 (first 16 hex digits) of what makes a run of ``method``: preset, overrides, the
        method's fields, selection metric, stopping rule and cap; not the seeds or the page text,
        so adding seeds keeps earlier summaries valid."""
        protocol = {
            "preset": self.preset,
            "overrides": self.overrides,
            "method": self.methods[method].fields,
            "selection": self.selection_metric,
            "stopping": [self.stopping.min_epochs, self.stopping.last_fraction],
            "min_delta": self.stopping.min_delta,
            "epochs": self.cap(method),
            **({"from_recovery": True} if self.stopping.from_recovery else {}),
        }
        text = json.dumps(protocol, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def version(self) -> str:
        return __version__

    def with_output(self, folder: str | Path | None) -> StudySpec:
        """The same study with its runs under ``folder/runs`` and summaries under
        ``folder/summaries`` (``--out DIR``); unchanged for None."""
        if folder is None:
            return self
        folder = Path(folder)
        return replace(self, runs_dir=folder / "runs", summaries_dir=folder / "summaries")

    def tasks(self) -> list[tuple[str, int]]:
        """Every (method, seed), seed-major (a partial study holds complete seeds, what pairing
        needs), methods in the file's order."""
        seeds = sorted({s for m in self.methods.values() for s in m.seeds})
        return [(m, s) for s in seeds for m, method in self.methods.items() if s in method.seeds]


TOP_KEYS = {
    "name": str,
    "preset": str,
    "overrides": dict,
    "methods": dict,
    "seeds": list,
    "selection": str,
    "stopping": dict,
    "epochs": int,
    "comparisons": dict,
    "output": dict,
    "page": dict,
}
REQUIRED = ("methods", "seeds", "epochs")


def _check_keys(where: str, values: dict, allowed: typing.Iterable[str]) -> None:
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise StudyError(
            f"{where}: unknown key(s) {', '.join(map(str, unknown))}; valid keys: "
            + ", ".join(sorted(allowed))
        )


def _seeds(where: str, values: Any) -> tuple[int, ...]:
    if not isinstance(values, list) or not values:
        raise StudyError(f"{where}: seeds must be a non-empty list of integers, got {values!r}")
    bad = [v for v in values if not isinstance(v, int) or isinstance(v, bool)]
    if bad:
        raise StudyError(f"{where}: seeds must be integers, got {bad[0]!r}")
    if len(set(values)) != len(values):
        raise StudyError(f"{where}: seeds repeat a value: {values}")
    return tuple(values)


def _typed(where: str, key: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise StudyError(f"{where}: {key} must be {kind.__name__}, got {value!r}")
    return value


def _train_fields(where: str, values: Any) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise StudyError(f"{where} must be a mapping of TrainConfig fields, got {values!r}")
    reserved = sorted(
        set(values) & {"seed", "epochs", "best_metric"}
        | {k for k in values if k.startswith("early_stop")}
    )
    if reserved:
        raise StudyError(
            f"{where}: {', '.join(reserved)} belong to the study (seeds, epochs, selection, "
            "stopping; a method may set its own seeds and epochs), not to the overrides"
        )
    try:
        return checked_fields(values, where)
    except ValueError as error:
        raise StudyError(str(error).splitlines()[0]) from None


def _pairs(where: str, values: Any, methods: dict[str, Method]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for pair in values or []:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise StudyError(f"{where}: each pair is [treated, control], got {pair!r}")
        pairs.append(tuple(_known(where, name, methods) for name in pair))
    return tuple(pairs)


def _known(where: str, name: Any, methods: dict[str, Method]) -> str:
    if name not in methods:
        raise StudyError(f"{where}: {name!r} is not a method of the study ({', '.join(methods)})")
    return name


def _comparisons(values: dict, methods: dict[str, Method]) -> Comparisons:
    _check_keys("comparisons", values, Comparisons.__dataclass_fields__)
    correlations = values.get("correlations") or {}
    for metric, sign in correlations.items():
        if sign not in ("negative", "positive"):
            raise StudyError(
                f"comparisons.correlations: {metric} must be negative or positive, got {sign!r}"
            )
    paper = {k: _typed("comparisons.paper_correlations", k, v, float)
             for k, v in (values.get("paper_correlations") or {}).items()}  # fmt: skip
    error = _typed("comparisons", "sampling_error", values.get("sampling_error", 0.0), float)
    if not math.isfinite(error) or error < 0:
        raise StudyError(f"comparisons.sampling_error must be a finite number >= 0, got {error!r}")
    return Comparisons(
        target=_typed("comparisons", "target", values.get("target", "test/recall@1"), str),
        alike=tuple(_known("comparisons.alike", m, methods) for m in values.get("alike") or []),
        equivalence_margin=_typed(
            "comparisons", "equivalence_margin", values.get("equivalence_margin", 0.02), float
        ),
        rho_pairs=_pairs("comparisons.rho_pairs", values.get("rho_pairs"), methods),
        extra_rho_pairs=_pairs(
            "comparisons.extra_rho_pairs", values.get("extra_rho_pairs"), methods
        ),
        correlations=dict(correlations),
        context_metrics=tuple(values.get("context_metrics") or ()),
        paper_correlations=paper,
        sampling_error=error,
        rules=_typed("comparisons", "rules", values.get("rules", 2), int),
    )


def _selection(metric: Any, base: dict[str, Any]) -> str:
    """``split/name`` where the split is the one the trainer selects on (val with validation
    classes, else test) and the name one it records (``selectable_metrics``); ``base``: the
    preset's values with the overrides."""
    split, _, name = str(metric).partition("/")
    defaults = TrainConfig()
    names = selectable_metrics(base.get("eval_ks", defaults.eval_ks))
    expected = "val" if base.get("val_classes", defaults.val_classes) > 0 else "test"
    if split not in SPLITS or name not in names:
        raise StudyError(
            f"selection: {metric!r} is not a metric the runs record; expected val/NAME or "
            f"test/NAME with NAME one of {', '.join(names)}"
        )
    if split != expected:
        raise StudyError(
            f"selection: {metric!r} but the runs select on the {expected} split "
            "(val needs val_classes > 0 in the overrides)"
        )
    return f"{split}/{name}"


def _stopping(values: dict) -> Stopping:
    """The ``stopping`` mapping, each key of ``Stopping`` with its type; min_delta finite, >= 0."""
    kinds = {"min_epochs": int, "last_fraction": float, "min_delta": float, "from_recovery": bool}
    _check_keys("stopping", values, kinds)
    given = {k: values.get(k, getattr(Stopping(), k)) for k in kinds}
    stopping = Stopping(**{k: _typed("stopping", k, given[k], t) for k, t in kinds.items()})
    if not math.isfinite(stopping.min_delta) or stopping.min_delta < 0:
        raise StudyError(f"stopping.min_delta must be >= 0, got {stopping.min_delta}")
    return stopping


def _near(study_file: Path, folder: str) -> Path:
    """``folder`` taken from the study file's folder (unchanged when absolute)."""
    return Path(os.path.normpath(study_file.parent / folder))


def load_spec(path: str | Path) -> StudySpec:
    """Read and check a study file; every problem is one ``StudyError`` line naming the file."""
    path = Path(path)
    try:
        return _load(path)
    except StudyError as error:
        raise StudyError(f"study file {path}: {error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise StudyError(f"study file {path} is not valid YAML{where}") from None


def _load(path: Path) -> StudySpec:
    if not path.is_file():
        raise StudyError("no such file")
    document = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    if not isinstance(document, dict):
        raise StudyError("expected a mapping of study keys")
    _check_keys("top level", document, TOP_KEYS)
    missing = [k for k in REQUIRED if k not in document]
    if missing:
        raise StudyError(f"missing key(s) {', '.join(missing)}")
    for key, kind in TOP_KEYS.items():
        if key in document:
            _typed("top level", key, document[key], kind)
    preset = document.get("preset")
    if preset is not None and preset not in PRESETS:
        raise StudyError(f"unknown preset {preset!r}; valid presets: {', '.join(sorted(PRESETS))}")
    overrides = _train_fields("overrides", document.get("overrides") or {})
    seeds = _seeds("seeds", document["seeds"])
    if not document["methods"]:
        raise StudyError("methods: the study names no method")
    methods = {}
    for name, values in document["methods"].items():
        values = dict(values or {})
        own = _seeds(f"methods.{name}.seeds", values.pop("seeds")) if "seeds" in values else seeds
        cap = values.pop("epochs", None)
        if cap is not None and (_typed(f"methods.{name}", "epochs", cap, int) < 1):
            raise StudyError(f"methods.{name}: epochs must be at least 1, got {cap}")
        fields = _train_fields(f"methods.{name}", values)
        methods[str(name)] = Method(str(name), fields, own, cap)
    stopping = _stopping(document.get("stopping") or {})
    output = document.get("output") or {}
    _check_keys("output", output, ("runs", "summaries"))
    page = document.get("page") or {}
    _check_keys("page", page, PageText.__dataclass_fields__)
    name = document.get("name", path.stem)
    runs_dir = _near(path, output.get("runs", f"runs/{name}"))
    spec = StudySpec(
        path=path,
        name=name,
        preset=preset,
        overrides=overrides,
        methods=methods,
        seeds=seeds,
        selection_metric=str(document.get("selection", "val/map@r")),
        stopping=stopping,
        epochs=document["epochs"],
        comparisons=_comparisons(document.get("comparisons") or {}, methods),
        page=PageText(**{k: str(v).strip() for k, v in page.items()}),
        runs_dir=runs_dir,
        summaries_dir=_near(path, output["summaries"])
        if "summaries" in output
        else runs_dir / "summaries",
    )
    _selection(spec.selection_metric, {**PRESETS.get(preset or "", {}), **overrides})
    for method in methods:
        try:
            spec.config(method, methods[method].seeds[0])
        except ValueError as error:
            raise StudyError(f"methods.{method}: {str(error).splitlines()[0]}") from None
    if spec.comparisons.rules not in (1, 2):
        raise StudyError(f"comparisons.rules must be 1 or 2, got {spec.comparisons.rules}")
    return spec
