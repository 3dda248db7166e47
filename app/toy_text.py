"""The Toy lab's words: metric labels, one plain-language sentence per term and per mode, the
side-by-side comparison said in words, and the seed study's table and caption. Pure: numbers in,
strings out (tests call them directly)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from app.format import metric_text

STORY = (
    "**What to point at.** Train *base* and *paper* side by side: *base* squeezes the classes "
    "onto the one direction the train labels need (one singular value takes nearly all the mass) "
    "and the test classes, which differ along the other direction, pile up; *paper* (the "
    "published regularized run) keeps the second singular value alive. *no_pull* (pull term "
    "dropped) flattens the spectrum as much, *rho* (swaps with p_ρ, pull kept) moves it a little. "
    "Press ▶ to replay a run, drag the slider to any step. Then run the seeds below: test "
    "Recall@1 varies a lot from seed to seed, so one seed proves nothing."
)
"""What a teacher points at, beside the inputs."""
PRESENTATION_STORY = (
    "Train classes (blues, filled) lie on the diagonal; the **unseen** test classes (reds, "
    "hollow) differ along the other direction."
)
STORY_CAPTION = (
    "The network maps these 2-D inputs to the unit circle (or sphere) below. Train and test "
    "are different classes: cool colours for train, warm ones for test."
)
METRIC_LABELS = {
    "test_recall@1": "test Recall@1",
    "train_recall@1": "train Recall@1",
    "rho@1": "ρ@1",
    "pi_ratio": "π_ratio",
}
METRIC_BOUNDS: dict[str, tuple[float, float | None]] = {
    "test_recall@1": (0.0, 1.0),
    "train_recall@1": (0.0, 1.0),
    "rho@1": (0.0, None),  # a KL divergence
    "pi_ratio": (0.0, None),  # a ratio of distances
}
"""Where each toy metric can lie: a mean's interval is clipped to it (a t-interval is not)."""
TERMS = {
    "test Recall@1": "test Recall@1 is the share of unseen test points whose nearest other "
    "point belongs to their own class (1 = always).",
    "ρ@1": "ρ@1 says how unevenly the embedding spreads over its directions: near 0 when every "
    "direction carries the same share (a flat spectrum), large when one direction carries "
    "almost everything.",
    "π_ratio": "π_ratio is the spread inside a class divided by the distance between classes: "
    "higher means each class keeps room inside instead of shrinking to a dot.",
    "pull + push": "pull + push: the loss pulls each point towards a point of its own class and "
    "pushes it away from any point of another class that is closer than the margin.",
    "swaps": "swaps: a training triple (point, classmate, other-class point) is replaced by "
    "(point, point, classmate), so the loss pushes two points of the same class apart.",
    "p_ρ": "p_ρ is the share of triples that mode rho swaps (0 = never, 1 = every triple).",
    "s̃": "s̃ᵢ is the share of the embedding's spread along its i-th direction (the singular "
    "values, normalised to sum to 1).",
}
"""One sentence a student understands for each term the page shows."""
MODES = {
    "base": "base: the plain loss (pull + push, no swaps); it tends to squeeze everything onto "
    "the one direction the training classes need.",
    "paper": "paper: the published regularized run, which drops the pull and swaps a few "
    "triples (p = 0.001).",
    "rho": "rho: the plain loss (pull + push) with a share p_ρ of the triples swapped "
    "(ρ-regularization).",
    "no_pull": "no_pull: push only, no swaps; it shows how much of paper's effect comes from "
    "dropping the pull.",
}
"""One sentence per toy mode."""
GLOSSARY_TERMS = ("test Recall@1", "ρ@1", "π_ratio", "pull + push", "swaps", "p_ρ")
"""The terms presentation mode spells out under the modes' panels, in order."""


def glossary_markdown(modes: Sequence[str]) -> str:
    """Presentation mode's visible explanations: one bullet per shown mode, then one per term of
    :data:`GLOSSARY_TERMS`, each starting with its mode or term in bold."""
    named = [(m, MODES[m]) for m in modes] + [(t, TERMS[t]) for t in GLOSSARY_TERMS]
    return "\n".join(f"- **{name}**{line.removeprefix(name)}" for name, line in named)


def modes_help(modes: Sequence[str]) -> str:
    """The help text of a mode picker: one line per mode, then what swaps and pull + push are."""
    return "\n\n".join([*(MODES[m] for m in modes), TERMS["pull + push"], TERMS["swaps"]])


def _percent(share: float) -> str:
    return f"{100 * share:.0f}\u00a0%"  # a no-break space: the % never starts a line


def spectrum_sentence(mode: str, reference: str, spectra: Mapping[str, np.ndarray]) -> str:
    """How ``mode``'s spectrum differs from ``reference``'s, in words: the share of Σs beyond
    the first singular value (the second one in 2-D) decides flatter or steeper."""
    tails = {m: float(1.0 - np.asarray(spectra[m], dtype=np.float64)[0]) for m in (mode, reference)}
    dims = len(spectra[mode])
    what = (
        "its second singular value carries"
        if dims == 2
        else ("its singular values after the first carry")
    )
    ours, theirs = _percent(tails[mode]), _percent(tails[reference])
    if ours == theirs:
        return (
            f"The spectrum of *{mode}* is as flat as *{reference}*'s: {what} {ours} of the spread."
        )
    shape = "flatter" if tails[mode] > tails[reference] else "steeper"
    return (
        f"The spectrum of *{mode}* is {shape} than *{reference}*'s: {what} {ours} of the "
        f"spread instead of {theirs}."
    )


def recall_sentence(mode: str, reference: str, metrics: Mapping[str, Mapping[str, float]]) -> str:
    """Test Recall@1 of ``mode`` and ``reference`` as shares of unseen points."""
    ours, theirs = (_percent(metrics[m]["test_recall@1"]) for m in (mode, reference))
    return (
        f"On the unseen test classes, *{mode}* puts a classmate nearest to {ours} of the points, "
        f"*{reference}* to {theirs}."
    )


def comparison_sentences(
    reference: str,
    metrics: Mapping[str, Mapping[str, float]],
    spectra: Mapping[str, np.ndarray],
) -> list[str]:
    """What the side by side shows, one line per mode other than ``reference``."""
    return [
        f"{spectrum_sentence(m, reference, spectra)} {recall_sentence(m, reference, metrics)}"
        for m in metrics
        if m != reference
    ]


TABLE_LABELS = {
    "test_recall@1": "test R@1",
    "train_recall@1": "train R@1",
    "rho@1": "ρ@1",
    "pi_ratio": "π_ratio",
}
"""Column heads of the side-by-side table (short: all eight columns fit at 1024 px)."""


def comparison_rows(
    metrics: Mapping[str, Mapping[str, float]],
    deltas: Mapping[str, Mapping[str, float]],
    spectra: Mapping[str, np.ndarray],
) -> list[dict[str, object]]:
    """The side-by-side table: per mode each metric (4 decimals) and its Δ to the reference
    (train R@1 without: it is 1 or nearly), then the train spectrum s̃ to 2 decimals."""
    rows = []
    for mode, values in metrics.items():
        row: dict[str, object] = {"mode": mode}
        for name, label in TABLE_LABELS.items():
            row[label] = round(values[name], 4)
            if name != "train_recall@1":
                row[f"Δ {label}"] = round(deltas[mode][name], 4)
        row["s̃ (train)"] = " / ".join(f"{value:.2f}" for value in spectra[mode])
        rows.append(row)
    return rows


def clipped_interval(metric: str, low: float, high: float) -> tuple[float, float]:
    """``(low, high)`` clipped to where ``metric`` can lie (:data:`METRIC_BOUNDS`)."""
    floor, ceiling = METRIC_BOUNDS.get(metric, (None, None))
    if floor is not None:
        low, high = max(low, floor), max(high, floor)
    if ceiling is not None:
        low, high = min(low, ceiling), min(high, ceiling)
    return low, high


def study_rows(study: Mapping[str, Any], metrics: Sequence[str]) -> list[dict[str, object]]:
    """One row per mode of a :func:`toy.run_study` document, headed by the metrics' labels: each
    metric as ``mean [low, high]``, the 95 % interval clipped to the metric's range (the mean
    alone for a single seed)."""
    rows = []
    for mode, data in study["modes"].items():
        row: dict[str, object] = {"mode": mode}
        for metric in metrics:
            summary = data["summary"][metric]
            text = metric_text(summary["mean"], 3)
            if summary.get("ci95"):
                low, high = clipped_interval(metric, *summary["ci95"])
                text += f" [{metric_text(low, 3)}, {metric_text(high, 3)}]"
            row[METRIC_LABELS.get(metric, metric)] = text
        rows.append(row)
    return rows


def settings_words(settings: Mapping[str, Any]) -> str:
    """A study's settings as a phrase: ``200 iterations, margin 0.1, learning rate 0.03, …``."""
    sampler = {"random": "random batches (as published)", "class_random": "class-balanced batches"}
    return (
        f"{settings['iterations']} iterations, margin {settings['margin']:g}, learning rate "
        f"{settings['lr']:g}, {sampler.get(settings['sampler'], settings['sampler'])}, "
        f"p_ρ {settings['push_probability']:g} (mode rho), {settings['embed_dim']}-D"
    )


def study_caption(study: Mapping[str, Any], *, stored: bool) -> str:
    """What the seed study shows: how many seeds, with which settings, and its interval."""
    seeds = study["seeds"]
    which = f"{len(seeds)} seeds ({seeds[0]}–{seeds[-1]})" if len(seeds) > 1 else f"seed {seeds[0]}"
    where = "Stored study (`python -m toy`, docs/toy/toy_study.json)" if stored else "This study"
    ending = "; press Run to use the current settings." if stored else "."
    return (
        f"{where}: {which}, {settings_words(study['settings'])}. Intervals: 95 % Student-t "
        f"interval of the mean over seeds, clipped to the metric's range{ending}"
    )
