"""Multi-seed study of the toy's modes: per-seed metrics and spectra, their mean ± std and 95%
interval, and paired differences to ``base`` (the same seed means the same data, initialisation and
batches, so a paired comparison removes most of the between-seed spread)."""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from scipy import stats

from toy.api import RESULT_METRICS, TOY_MODES, ToySettings, run_toy, use_one_thread

INTERVAL = "ci95: two-sided 95% Student-t interval of the mean over seeds"
Progress = Callable[[int, int], None]


def interval_summary(values: np.ndarray) -> dict[str, Any]:
    """Mean, sample std (ddof 1) and 95% t-interval of the mean, x̄ ± t₀.₉₇₅,ₙ₋₁ · s/√n, over axis 0
    (std and interval are None for a single seed)."""
    values = np.asarray(values, dtype=np.float64)
    mean = values.mean(axis=0)
    count = values.shape[0]
    if count < 2:
        return {"mean": mean.tolist(), "std": None, "ci95": None}
    std = values.std(axis=0, ddof=1)
    half_width = stats.t.ppf(0.975, count - 1) * std / math.sqrt(count)
    return {
        "mean": mean.tolist(),
        "std": std.tolist(),
        "ci95": [(mean - half_width).tolist(), (mean + half_width).tolist()],
    }


def paired_difference(values: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """``values − reference`` per seed: its interval summary and how many seeds are lower/higher."""
    difference = np.asarray(values, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    return {
        **interval_summary(difference),
        "seeds_lower": int((difference < 0).sum()),
        "seeds_higher": int((difference > 0).sum()),
    }


def versus_reference(
    metrics: dict[str, dict[str, float]], reference: str
) -> dict[str, dict[str, float]]:
    """One seed, several modes: each mode's metrics minus the ``reference`` mode's. The same seed
    means the same data, initialisation and batches, so the difference is the mode's alone, for
    this seed (other seeds differ: :func:`run_study`)."""
    if reference not in metrics:
        raise ValueError(f"reference mode {reference!r} is not among {', '.join(metrics)}")
    return {
        mode: {name: value - metrics[reference][name] for name, value in values.items()}
        for mode, values in metrics.items()
    }


def json_safe(value: Any) -> Any:
    """Non-finite floats become None so the document is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def study_record(settings: ToySettings) -> dict[str, Any]:
    """One run of a study: its seed, ``RESULT_METRICS`` and spectrum (what a worker sends back)."""
    result = run_toy(settings)
    return {"seed": settings.seed, **result.metrics, "spectrum": result.spectrum.tolist()}


def study_records(runs: list[ToySettings], workers: int) -> Iterator[dict[str, Any]]:
    """``study_record`` of each run, in order: in this process (``workers`` 1) or in a pool of
    ``workers`` processes, forked where the platform allows (the parent's imports are inherited),
    each with one torch and one faiss thread. A run depends on its settings only (its seed fixes
    data, initialisation, batches and swaps), so the records are the same either way."""
    workers = min(workers, len(runs))
    if workers <= 1:
        yield from map(study_record, runs)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with context.Pool(workers, initializer=use_one_thread) as pool:
        yield from pool.imap(study_record, runs)


def run_study(
    modes: Sequence[str] = TOY_MODES,
    seeds: int | Sequence[int] = 20,
    settings: ToySettings | None = None,
    progress: Progress | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Run every mode for every seed (``seeds``: a count or the seeds themselves) with the other
    fields of ``settings``, in ``workers`` processes (1: this one, :func:`study_records`);
    ``progress(done, total)`` after each run. Returns a JSON-able dict:
    ``settings``, ``seeds``, ``interval``, ``modes`` (per mode: ``swap_probability``,
    ``pull_weight``, ``summary`` of each metric and of ``spectrum``, ``per_seed`` records) and
    ``versus_base`` (paired differences mode − base, when ``base`` is among the modes)."""
    settings = settings or ToySettings()
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    unknown = [mode for mode in modes if mode not in TOY_MODES]
    if unknown or not modes or not seed_list:
        raise ValueError(
            f"run_study needs modes among {', '.join(TOY_MODES)} (got {list(modes)}) "
            f"and at least one seed (got {seed_list})"
        )
    if workers < 1:
        raise ValueError(f"run_study needs at least one worker process, got {workers}")
    runs = [replace(settings, mode=mode, seed=seed) for mode in modes for seed in seed_list]
    done: list[dict[str, Any]] = []
    for record in study_records(runs, workers):
        done.append(record)
        if progress is not None:
            progress(len(done), len(runs))
    per_mode: dict[str, Any] = {}
    values: dict[str, dict[str, np.ndarray]] = {}
    for mode_index, mode in enumerate(modes):
        records = done[mode_index * len(seed_list) : (mode_index + 1) * len(seed_list)]
        values[mode] = {
            name: np.array([record[name] for record in records])
            for name in (*RESULT_METRICS, "spectrum")
        }
        mode_settings = replace(settings, mode=mode)
        per_mode[mode] = {
            "swap_probability": mode_settings.swap_probability,
            "pull_weight": mode_settings.pull_weight,
            "summary": {name: interval_summary(array) for name, array in values[mode].items()},
            "per_seed": records,
        }
    versus_base = {
        mode: {
            name: paired_difference(values[mode][name], values["base"][name])
            for name in RESULT_METRICS
        }
        for mode in modes
        if "base" in values and mode != "base"
    }
    study_settings = {k: v for k, v in settings.to_dict().items() if k not in ("mode", "seed")}
    return json_safe(
        {
            "experiment": "diagonal-lines toy, Roth et al. (ICML 2020) §4.1",
            "settings": study_settings,
            "seeds": seed_list,
            "interval": INTERVAL,
            "modes": per_mode,
            "versus_base": versus_base,
        }
    )


def _cell(summary: dict[str, Any], index: int | None = None) -> str:
    def pick(value: Any) -> Any:
        return value if index is None or value is None else value[index]

    mean, std, ci95 = pick(summary["mean"]), pick(summary["std"]), summary["ci95"]
    if mean is None:
        return "n/a"
    if std is None or ci95 is None:
        return f"{mean:.3f}"
    low, high = pick(ci95[0]), pick(ci95[1])
    return f"{mean:.3f} ± {std:.3f} [{low:.3f}, {high:.3f}]"


def markdown_table(study: dict[str, Any]) -> str:
    """One row per mode: mean ± std [95% CI] of each metric and of the largest normalised
    singular value s̃₁ of the train embedding."""
    header = ["mode", "swap p", "pull", "test R@1", "train R@1", "ρ@1", "π_ratio", "s̃₁"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for mode, entry in study["modes"].items():
        summary = entry["summary"]
        cells = [
            f"`{mode}`",
            f"{entry['swap_probability']:g}",
            f"{entry['pull_weight']:g}",
            *(_cell(summary[name]) for name in RESULT_METRICS),
            _cell(summary["spectrum"], 0),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
