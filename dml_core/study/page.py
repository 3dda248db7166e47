"""The results page of one or more studies (Markdown), from their summaries alone.

Per study file a section: settings and how many runs finished, the method table (mean ± std over
seeds at each run's selected epoch, runs at the cap with their last-quarter gain), the claims
(``claims.py``), within-run trajectories, and every run with its curves (``figures.py``). The page
starts with the title and introductions of the study files and ends with their appendices.
"""

from __future__ import annotations

import math
import os
import shlex
from pathlib import Path

import numpy as np

from dml_core.io import atomic_write_bytes
from dml_core.study import claims, rules
from dml_core.study.claims import trajectory_table, values_of
from dml_core.study.figures import metric_title, write_csv, write_curves
from dml_core.study.spec import StudySpec
from dml_core.study.summaries import RunSummary, load_runs

Runs = dict[str, list[RunSummary]]
TRAIN_METRIC = "train/recall@1"


def mean_std(runs: list[RunSummary], metric: str) -> str:
    values = values_of(runs, metric)
    if len(values) == 0:
        return "–"
    if len(values) == 1:
        return f"{values.mean():.4f}"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"


def at_the_cap(runs: list[RunSummary]) -> str:
    """The runs stopped by the epoch cap and their median last-quarter gain, as "k (+g)"."""
    gains = [r.gain for r in runs if r.stop != "converged"]
    return f"{len(gains)} ({float(np.median(gains)):+.4f})" if gains else "0"


def method_table(spec: StudySpec, by_method: Runs) -> list[str]:
    has_train = any(TRAIN_METRIC in r.selected for runs in by_method.values() for r in runs)
    selection = metric_title(spec.selection_metric)
    columns = [
        (spec.comparisons.target, "test R@1"),
        (TRAIN_METRIC, "train R@1"),
        (spec.selection_metric, selection),
        ("test/map@r", "test MAP@R"),
        ("train/rho@2", "train ρ@2"),
        ("train/pi_ratio", "train π_ratio"),
    ]
    if not has_train:
        columns = [c for c in columns if c[0] != TRAIN_METRIC]
    lines = [
        "| method | runs | at the cap | " + " | ".join(title for _, title in columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for method, runs in by_method.items():
        if runs:
            cells = [at_the_cap(runs), *(mean_std(runs, metric) for metric, _ in columns)]
            lines.append(f"| {method} | {len(runs)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "*At the cap*: how many runs reached the epoch cap before the rule saw a plateau, and the "
        f"median of their last-quarter gains in {metric_title_long(spec)}. A method whose runs "
        "were still gaining at the cap is described here as it was when it stopped, not as it "
        "would be after longer training.",
    ]
    if not has_train:
        lines += [
            "",
            "Train-split Recall@1 was not recorded by these runs (the trainer evaluates only "
            "embedding-space metrics on the train split), so fitting cannot be compared with "
            "test Recall@1 here.",
        ]
    return lines


def metric_title_long(spec: StudySpec) -> str:
    split, name = spec.selection_metric.split("/", 1)
    words = {"val": "validation", "test": "test"}[split]
    return f"{words} {'MAP@R' if name == 'map@r' else name}"


def _cell(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:.4f}"


def run_table(spec: StudySpec, by_method: Runs) -> list[str]:
    selection, target = spec.selection_metric, spec.comparisons.target
    lines = [
        f"| run | stop | epochs | selected epoch | last-quarter gain ({metric_title(selection)}) | "
        f"{metric_title(selection)} | test R@1 | train R@1 | minutes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, runs in by_method.items():
        for r in runs:
            lines.append(
                f"| {method} seed {r.seed} | {r.stop} | {r.epochs} | {r.selected_epoch} | "
                f"{r.gain:+.4f} | {_cell(r.selected.get(selection, math.nan))} | "
                f"{_cell(r.selected.get(target, math.nan))} | "
                f"{_cell(r.selected.get(TRAIN_METRIC, math.nan))} | {r.seconds / 60:.1f} |"
            )
    return lines


def kept_first_evaluation(spec: StudySpec, by_method: Runs) -> str:
    """A sentence naming the runs whose selected epoch is their first evaluation ("" if none)."""
    names = [
        f"{r.method} seed {r.seed}"
        for runs in by_method.values()
        for r in runs
        if r.selected_epoch == r.history["epoch"][0]  # load_summary refuses empty histories
    ]
    if not names:
        return ""
    return (
        f" Selected at their first evaluation: {', '.join(names)}. "
        f"{metric_title_long(spec)[0].upper()}{metric_title_long(spec)[1:]} never beat "
        "its first value before the rule stopped the run (see the curves below), "
        "so such a run describes its starting point more than its method."
    )


def study_flags(spec: StudySpec) -> str:
    """The train flags the study adds to its preset (besides each method's own)."""
    flags = []
    for name, value in {**spec.overrides, "epochs": spec.epochs}.items():
        flags += [f"--{name.replace('_', '-')}", str(value)]
    flags += ["--best-metric", spec.selection_metric.split("/", 1)[1]]
    return shlex.join(flags)


def _own_caps(spec: StudySpec) -> str:
    """`` (softmax: epoch 80)`` for methods with their own cap, "" when none has one."""
    caps = spec.own_caps()
    return f" ({', '.join(f'{m}: epoch {c}' for m, c in caps.items())})" if caps else ""


def _selection_reason(spec: StudySpec, by_method: Runs) -> str:
    """Why the study selects on MAP@R, in numbers from its own runs ("." if it selects on Recall@1)."""
    recalls = [
        r.selected["val/recall@1"]
        for runs in by_method.values()
        for r in runs
        if not math.isnan(r.selected.get("val/recall@1", math.nan))
    ]
    if spec.selection_metric == "val/recall@1" or not recalls:
        return "."
    noise = spec.comparisons.sampling_error
    error = f", whose sampling error is ±{noise:.4f}" if noise else ""
    return (
        f" (validation Recall@1 at the selected epochs lies between {min(recalls):.3f} and "
        f"{max(recalls):.3f} over {len(recalls)} runs; the study selects on "
        f"{metric_title_long(spec)}{error})."
    )


def section(spec: StudySpec, by_method: Runs, figure_link: str | None = None) -> list[str]:
    finished = sum(len(runs) for runs in by_method.values())
    total = len(spec.tasks())
    converged = sum(r.stop == "converged" for runs in by_method.values() for r in runs)
    selection = metric_title_long(spec)
    lines = [
        f"## Regime `{spec.name}`: preset `{spec.preset}`",
        "",
        f"The `{spec.preset}` preset {spec.page.description}; the study "
        f"(`{os.path.basename(spec.path)}`) adds `{study_flags(spec)}` and stops a run when its "
        f"{selection} has set no new best over the last {_fraction(spec)} of its evaluations "
        f"(after at least {spec.stopping.min_epochs} epochs{_rule_options(spec)}), at the latest "
        f"at epoch {spec.epochs}{_own_caps(spec)}. Every value below is taken at the epoch of "
        f"the best {selection}"
        + _selection_reason(spec, by_method)
        + (f" {spec.page.caveat}" if spec.page.caveat else ""),
        "",
        f"**{finished} of {total} runs finished** ({converged} converged by the rule, "
        f"{finished - converged} stopped at the epoch cap).",
    ]
    if finished < total:
        lines[-1] += (
            f" {total - finished} remain; continue them with "
            f"`python -m dml_core study run {spec.path.as_posix()}` (or in pieces, "
            f"`--shard i/n` for i = 1…n), then `python -m dml_core study results "
            f"{spec.path.as_posix()}` (with the other study files of the page). Until "
            "every method has all its seeds the verdicts below are provisional: an "
            "interval over 2 or 3 seeds rests on 1 or 2 degrees of freedom, and a verdict may "
            "still change."
        )
    if finished == 0:
        return [*lines, ""]
    lines[-1] += kept_first_evaluation(spec, by_method)
    return [
        *lines,
        "",
        "### Methods (mean ± std over seeds)",
        "",
        *method_table(spec, by_method),
        "",
        "### Claims",
        "",
        *claim_paragraphs(spec, by_method),
        "Within-run trajectories (another question: does the metric move with Recall@1 while "
        "one model trains?), over each run's evaluations:",
        "",
        *trajectory_table(spec, by_method),
        "",
        "### Every run",
        "",
        *(
            [f"![{selection} of every run per evaluation]({figure_link})", ""]
            if figure_link
            else []
        ),
        *run_table(spec, by_method),
        "",
    ]


CLAIM_TITLES = (
    "Claim 1: methods perform alike under the fair protocol",
    "Claim 2: ρ-regularization raises Recall@1 for triplet-family losses",
    "Claim 3: train-split ρ@2 and π_ratio correlate with test Recall@1 across methods",
)
FIRST_RULES = (
    "Paired by seed, for each pair of losses without ρ; a pair is alike when the 95 % interval of "
    "its difference lies within ±{margin}, different when it lies wholly outside, else "
    "inconclusive. The claim holds when every pair is alike and fails when one pair is different.",
    "Paired by seed (same data, initialisation and batches), t interval; a pair holds when its "
    "interval lies above 0, fails when below, and is inconclusive when it contains 0. The last "
    "column checks the mechanism: ρ-regularization is meant to flatten the train spectrum, i.e. "
    "lower train ρ@2; where that interval does not lie below 0, a pair's Recall@1 verdict does "
    "not test what the regularizer does to the spectrum.",
    "Correlations of the per-method means (methods with ≥ 2 runs); 95 % percentile bootstrap "
    "over seeds resampled within each method (4,000 resamples, fixed seed). Holds when both "
    "Spearman intervals exclude 0 on the paper's side.",
)
"""The rules of the first glyphs study (``comparisons.rules: 1``), as its page printed them."""


def claim_paragraphs(spec: StudySpec, by_method: Runs) -> list[str]:
    """Each claim: its verdict, the rule it follows from (written out) and its table."""
    module, texts = (
        (claims, FIRST_RULES) if spec.comparisons.rules == 1 else (rules, rules.CLAIM_RULES)
    )
    results = (module.claim_alike, module.claim_rho, module.claim_correlation)
    values = {"margin": spec.comparisons.equivalence_margin}
    values["error"] = f"{spec.comparisons.sampling_error:g}"
    lines: list[str] = []
    for title, text, claim in zip(CLAIM_TITLES, texts, results, strict=True):
        verdict, table = claim(spec, by_method)
        lines += [f"**{title}: {verdict}.** {text.format(**values)}", "", *table, ""]
    return lines


def _rule_options(spec: StudySpec) -> str:
    """The rule's options in words ("" for the plain rule, so the first study's page is unchanged)."""
    words = ""
    if spec.stopping.min_delta > 0:
        words += f"; a gain of at most {spec.stopping.min_delta:g} is no new best"
    if spec.stopping.from_recovery:
        words += (
            "; counting only the evaluations from the first one above the run's first, so a dip "
            "while a new head settles is no plateau"
        )
    return words


def _fraction(spec: StudySpec) -> str:
    fraction = spec.stopping.last_fraction
    return "quarter" if fraction == 0.25 else f"{fraction:g} fraction"


def figure_path(spec: StudySpec, page: Path) -> Path:
    """``study/<name>-curves.png`` in the page's folder."""
    return page.parent / "study" / f"{spec.name}-curves.png"


def results_page(
    specs: list[StudySpec], page: Path | None = None, folders: list[Path | None] | None = None
) -> str:
    """The page from the summaries alone; with ``page`` (where it will be written) the curves
    and the CSV of every run are written beside it and linked. ``folders``: each study's
    summaries folder when not its file's (``--out DIR`` of ``run``)."""
    folders = folders or [None] * len(specs)
    studies = [(spec, load_runs(spec, folder)) for spec, folder in zip(specs, folders, strict=True)]
    texts = [s.page for s in specs]
    title = next((t.title for t in texts if t.title), "Study results")
    parts = [f"# {title}\n", *dict.fromkeys(t.introduction + "\n" for t in texts if t.introduction)]
    for spec, by_method in studies:
        link = None
        if page is not None and any(by_method.values()):
            path = write_curves(spec, by_method, figure_path(spec, page))
            link = Path(os.path.relpath(path, page.parent)).as_posix()
        parts.append("\n".join(section(spec, by_method, link)))
    parts += dict.fromkeys(t.appendix + "\n" for t in texts if t.appendix)
    if page is not None:
        write_csv(studies, page.with_suffix(".csv"))
    return "\n".join(parts)


def write_results(
    specs: list[StudySpec], page: Path, folders: list[Path | None] | None = None
) -> str:
    """Write the page (atomically), its curves and its CSV; returns the page's text."""
    text = results_page(specs, page, folders)
    atomic_write_bytes(page, text.encode())
    return text
