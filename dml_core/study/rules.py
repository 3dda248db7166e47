"""The verdict rules of the corrected glyphs study (``comparisons.rules: 2``, the default).

Each rule is printed on the page beside its table (``CLAIM_RULES``); the verdicts follow from it
alone. Differences are paired by seed (``dml_core.statistics.paired_difference``), α = 0.05.

- **Convergence.** A method is *not converged* when one of its runs reached the epoch cap with a
  last-quarter gain of the selection metric above the study's ``sampling_error``; a pair with
  such a side reads "not converged" and does not count toward its claim.
- **Claim 1** (pairs of ``alike`` methods): the equivalence p-value within ±margin (Schuirmann's
  TOST) and the p-value that the difference lies beyond the margin (one-sided t test on
  |d̄| − margin, doubled for choosing the side after seeing d̄), each Holm-adjusted over the
  counted pairs (Holm 1979). Alike: adjusted TOST p ≤ α; different: adjusted beyond-margin
  p ≤ α; else inconclusive.
- **Claim 2** (ρ pairs): counted only where ρ did what it is for: the 95 % interval of the
  paired train ρ@2 difference lies below 0, else "mechanism not engaged". Two-sided paired t
  p-values, Holm-adjusted over the counted pairs: raises (adjusted p ≤ α, d̄ > 0), lowers
  (adjusted p ≤ α, d̄ < 0), else inconclusive; beside each, the smallest effect the pair could
  detect (80 % power).
- **Claims 1–2 as a whole**: hold when every pair counts and is alike / raises; fail when a
  counted pair is different / lowers; else inconclusive.
- **Claim 3**: Pearson and Spearman over method means with percentile bootstraps that resample
  seeds jointly across methods, and a permutation p-value over methods; a metric agrees when its
  Spearman interval excludes 0 on the paper's side and its permutation p ≤ α that way, disagrees
  when both hold the other way; the claim holds when all agree, fails when one disagrees.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from scipy import stats

from dml_core.statistics import (
    PairedDifference,
    holm_adjust,
    joint_bootstrap_correlation,
    minimum_detectable_effect,
    paired_p_value,
    permutation_correlation_test,
)
from dml_core.study.claims import DIRECTION, SPECTRUM_METRIC, Runs, interval, paired
from dml_core.study.spec import StudySpec

ALPHA = 0.05


@dataclass(frozen=True)
class PairRow:
    a: str
    b: str
    difference: PairedDifference
    verdict: str
    adjusted: tuple[float, ...] = ()
    """Holm-adjusted p-values of the counted pair (claim 1: TOST, beyond margin; claim 2: one)."""


def unconverged(spec: StudySpec, by_method: Runs, method: str) -> bool:
    """One of the method's runs reached the cap still gaining more than the sampling error."""
    tolerance = spec.comparisons.sampling_error
    return tolerance > 0 and any(
        r.stop != "converged" and r.gain > tolerance for r in by_method.get(method, [])
    )


def beyond_margin_p(d: PairedDifference, margin: float) -> float:
    """p of H₀ |μ| ≤ margin against the side of d̄: t = (|d̄| − margin)/(s/√n), 2·P(T ≥ t)."""
    if d.n < 2 or not math.isfinite(d.std) or d.std == 0:
        return math.nan
    statistic = (abs(d.estimate) - margin) / (d.std / math.sqrt(d.n))
    return float(min(1.0, 2 * stats.t.sf(statistic, d.n - 1)))


def _combine(verdicts: list[str], good: str, bad: str) -> str:
    if bad in verdicts:
        return "fails"
    return "holds" if verdicts and all(v == good for v in verdicts) else "inconclusive"


def alike_rows(spec: StudySpec, by_method: Runs) -> tuple[str, list[PairRow]]:
    margin, target = spec.comparisons.equivalence_margin, spec.comparisons.target
    pairs = list(itertools.combinations(spec.comparisons.alike, 2))
    differences = [paired(by_method, a, b, target) for a, b in pairs]
    counted = [
        i
        for i, (a, b) in enumerate(pairs)
        if not (unconverged(spec, by_method, a) or unconverged(spec, by_method, b))
        and differences[i].n >= 2
    ]
    tost = holm_adjust([paired_p_value(differences[i], "equivalent", margin) for i in counted])
    beyond = holm_adjust([beyond_margin_p(differences[i], margin) for i in counted])
    rows = []
    for i, (a, b) in enumerate(pairs):
        d = differences[i]
        if i not in counted:
            reason = "not converged" if d.n >= 2 else "fewer than 2 seeds"
            rows.append(PairRow(a, b, d, reason))
            continue
        j = counted.index(i)
        if tost[j] <= ALPHA:
            result = "alike"
        elif beyond[j] <= ALPHA:
            result = "different"
        else:
            result = "inconclusive"
        rows.append(PairRow(a, b, d, result, (tost[j], beyond[j])))
    verdicts = [r.verdict for r in rows]
    return _combine(verdicts, "alike", "different"), rows


def rho_rows(
    spec: StudySpec, by_method: Runs
) -> tuple[str, list[tuple[PairRow, PairedDifference]]]:
    target = spec.comparisons.target
    pairs = list(spec.comparisons.rho_pairs)
    differences = [paired(by_method, t, c, target) for t, c in pairs]
    spectra = [paired(by_method, t, c, SPECTRUM_METRIC) for t, c in pairs]
    reasons = []
    for (treated, control), d, spectrum in zip(pairs, differences, spectra, strict=True):
        if d.n < 2:
            reasons.append("fewer than 2 seeds")
        elif not spectrum.high < 0:  # NaN (not recorded) is not below 0 either
            reasons.append("mechanism not engaged")
        elif unconverged(spec, by_method, treated) or unconverged(spec, by_method, control):
            reasons.append("not converged")
        else:
            reasons.append("")
    counted = [i for i, reason in enumerate(reasons) if not reason]
    adjusted = holm_adjust([paired_p_value(differences[i], "two-sided") for i in counted])
    rows = []
    for i, ((treated, control), d) in enumerate(zip(pairs, differences, strict=True)):
        if reasons[i]:
            rows.append((PairRow(treated, control, d, reasons[i]), spectra[i]))
            continue
        p = adjusted[counted.index(i)]
        result = "inconclusive" if p > ALPHA else "raises" if d.estimate > 0 else "lowers"
        rows.append((PairRow(treated, control, d, result, (p,)), spectra[i]))
    return _combine([r.verdict for r, _ in rows], "raises", "lowers"), rows


def _p(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:.3f}"


def _mde(d: PairedDifference) -> str:
    effect = minimum_detectable_effect(d.std, d.n) if d.n >= 2 else math.nan
    return "–" if not math.isfinite(effect) else f"±{effect:.4f}"


def _estimate(d: PairedDifference) -> str:
    return "–" if math.isnan(d.estimate) else f"{d.estimate:+.4f}"


def claim_alike(spec: StudySpec, by_method: Runs) -> tuple[str, list[str]]:
    margin = spec.comparisons.equivalence_margin
    claim, rows = alike_rows(spec, by_method)
    lines = [
        "| pair (a − b) | seeds | mean difference of test R@1 | 95 % CI | Holm p, within "
        f"±{margin} | Holm p, beyond ±{margin} | detectable (80 %) | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        tost, beyond = r.adjusted or (math.nan, math.nan)
        lines.append(
            f"| {r.a} − {r.b} | {r.difference.n} | {_estimate(r.difference)} | "
            f"{interval(r.difference.low, r.difference.high)} | {_p(tost)} | {_p(beyond)} | "
            f"{_mde(r.difference)} | {r.verdict} |"
        )
    return claim, lines


def claim_rho(spec: StudySpec, by_method: Runs) -> tuple[str, list[str]]:
    claim, rows = rho_rows(spec, by_method)
    lines = [
        "| pair (with ρ − without) | seeds | train ρ@2 difference [95 % CI] | mean difference "
        "of test R@1 | 95 % CI | Holm p | detectable (80 %) | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r, spectrum in rows:
        (p,) = r.adjusted or (math.nan,)
        lines.append(
            f"| {r.a} − {r.b} | {r.difference.n} | {_estimate(spectrum)} "
            f"{interval(spectrum.low, spectrum.high)} | {_estimate(r.difference)} | "
            f"{interval(r.difference.low, r.difference.high)} | {_p(p)} | {_mde(r.difference)} "
            f"| {r.verdict} |"
        )
    return claim, lines


def correlation_runs(
    by_method: Runs, metric: str, target: str
) -> dict[str, dict[int, tuple[float, float]]]:
    """method → seed → (train metric, target) at the selected epoch, methods with ≥ 2 runs."""
    runs = {}
    for method, group in by_method.items():
        values = {
            r.seed: (r.selected.get(metric, math.nan), r.selected.get(target, math.nan))
            for r in group
        }
        values = {s: v for s, v in values.items() if all(math.isfinite(x) for x in v)}
        if len(values) >= 2:
            runs[method] = values
    return runs


def claim_correlation(spec: StudySpec, by_method: Runs) -> tuple[str, list[str]]:
    comparisons = spec.comparisons
    lines = [
        "| train-split metric | methods | Pearson r [95 % CI] | Spearman ρ [95 % CI] | "
        "permutation p | paper (CUB200) | expected sign | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for metric in (*comparisons.correlations, *comparisons.context_metrics):
        runs = correlation_runs(by_method, metric, comparisons.target)
        sign = comparisons.correlations.get(metric)
        paper = comparisons.paper_correlations.get(metric)
        paper_text = "–" if paper is None else f"{paper:+.2f}"
        if len(runs) < 3:
            lines.append(f"| {metric} | {len(runs)} | – | – | – | {paper_text} | – | needs ≥ 3 |")
            verdicts += ["inconclusive"] if sign else []
            continue
        pearson = joint_bootstrap_correlation(runs, "pearson")
        spearman = joint_bootstrap_correlation(runs, "spearman")
        means = [[sum(v[k] for v in seeds.values()) / len(seeds) for k in (0, 1)]
                 for seeds in runs.values()]  # fmt: skip
        x, y = [m[0] for m in means], [m[1] for m in means]
        expected = DIRECTION.get(sign or "", "two-sided")
        permutation = permutation_correlation_test(x, y, alternative=expected)
        if sign:
            opposite = {"less": "greater", "greater": "less"}[expected]
            other = permutation_correlation_test(x, y, alternative=opposite).p_value
            below = (spearman.high < 0, spearman.low > 0)
            toward, against = below if expected == "less" else below[::-1]
            if toward and permutation.p_value <= ALPHA:
                result = "holds"
            elif against and other <= ALPHA:
                result = "fails"
            else:
                result = "inconclusive"
            verdicts.append(result)
        else:
            result = "context"
        lines.append(
            f"| {metric} | {len(runs)} | {pearson.estimate:+.2f} "
            f"[{pearson.low:+.2f}, {pearson.high:+.2f}] | {spearman.estimate:+.2f} "
            f"[{spearman.low:+.2f}, {spearman.high:+.2f}] | {_p(permutation.p_value)} | "
            f"{paper_text} | {sign or '–'} | {result} |"
        )
    return _combine(verdicts, "holds", "fails"), lines


CLAIM_RULES = (
    "Paired by seed, for each pair of losses without ρ. A pair whose methods have a run that "
    "reached the epoch cap with a last-quarter gain above the validation metric's sampling error "
    "({error}) reads *not converged* and does not count. For the others, α = 0.05 after Holm's "
    "correction over the counted pairs: *alike* when the equivalence test (TOST) puts the "
    "difference within ±{margin}, *different* when the one-sided test puts it beyond ±{margin} "
    "(p doubled for the side chosen after seeing the difference), else *inconclusive*. The claim "
    "holds when every pair counts and is alike, fails when a counted pair is different, else it "
    "is inconclusive. *Detectable*: the smallest true difference a paired t test at 5 % would "
    "find with 80 % power, given the pair's seed-to-seed spread.",
    "Paired by seed (same data, initialisation and batches). A pair counts only when "
    "ρ-regularization did what it is for, lowering train ρ@2 (the 95 % interval of the paired "
    "ρ@2 difference lies below 0; else *mechanism not engaged*), and when both methods converged "
    "as in claim 1 (else *not converged*). Counted pairs: two-sided paired t test, Holm-corrected "
    "over the counted pairs, α = 0.05: *raises* or *lowers* by the sign of the difference when "
    "significant, else *inconclusive*. The claim holds when every pair counts and raises, fails "
    "when a counted pair lowers, else it is inconclusive.",
    "Correlations of the per-method means (methods with ≥ 2 runs). 95 % percentile bootstrap "
    "that resamples seeds jointly across methods (all methods share seeds; seeds only some "
    "methods ran are resampled among those methods; 4,000 resamples, fixed seed), and a "
    "permutation p-value over methods in the paper's direction. The methods are not independent "
    "points (each ρ variant shares its loss, miner and seeds with its base), so the permutation "
    "p-value overstates the evidence. A metric agrees with the paper when its Spearman interval "
    "excludes 0 on the paper's side and its permutation p ≤ 0.05 in that direction, disagrees "
    "when both hold in the other direction, else it is inconclusive; the claim holds when every "
    "expected-sign metric agrees, fails when one disagrees, else it is inconclusive.",
)
