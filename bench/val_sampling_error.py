"""Sampling error of a checkpoint's validation MAP@R: how far apart two evaluations may land by the
choice of validation images alone.

Prints one JSON document per checkpoint: the validation split's size, MAP@R, the standard error of
the mean over queries (std of the per-query AP@R / √n) and a cluster bootstrap standard error that
resamples whole validation classes (queries of one class share their gallery, so they are not
independent; 2,000 resamples, fixed seed). A study uses the larger one as the gain below which a
run at its epoch cap counts as converged (``comparisons.sampling_error`` in a study file).

    .venv/bin/python bench/val_sampling_error.py checkpoints/glyphs-finetune-margin-base.safetensors
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from dml_core.engine.evaluation import embed_checkpoint
from dml_core.metrics.retrieval import retrieval_report


def sampling_error(path: str, resamples: int = 2000, seed: int = 0) -> dict[str, float | int | str]:
    embedded = embed_checkpoint(path, "val", device="cpu")
    report = retrieval_report(embedded.embeddings, embedded.labels)
    per_query = np.asarray(report.average_precision_at_r, dtype=float)
    kept = np.isfinite(per_query)
    values, labels = per_query[kept], np.asarray(embedded.labels)[kept]
    classes = np.unique(labels)
    sums = np.array([values[labels == c].sum() for c in classes])
    counts = np.array([(labels == c).sum() for c in classes])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(classes), size=(resamples, len(classes)))
    bootstrap_means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    return {
        "checkpoint": path,
        "queries": len(values),
        "classes": len(classes),
        "map@r": float(values.mean()),
        "se_queries": float(values.std(ddof=1) / np.sqrt(len(values))),
        "se_class_bootstrap": float(bootstrap_means.std(ddof=1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args()
    print(json.dumps([sampling_error(p, args.resamples) for p in args.checkpoints], indent=2))


if __name__ == "__main__":
    main()
