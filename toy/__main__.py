"""``python -m toy``: the multi-seed study of the diagonal-lines toy, its JSON and its figure.

Example: ``python -m toy --seeds 20 --json docs/toy/toy_study.json --figure docs/toy/toy_figure.png``
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

from dml_core.io import atomic_write_json
from toy.api import TOY_MODES, TOY_SAMPLERS, ToySettings, run_toy, toy_data
from toy.study import markdown_table, run_study


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = ToySettings()
    parser = argparse.ArgumentParser(prog="python -m toy", description=__doc__)
    parser.add_argument("--seeds", type=int, default=20, help="seeds 0 … N−1 per mode")
    parser.add_argument("--json", help="write the study here (JSON)")
    parser.add_argument("--figure", help="write the figure here (PNG)")
    parser.add_argument("--modes", nargs="+", choices=TOY_MODES, default=list(TOY_MODES))
    parser.add_argument("--push-probability", type=float, default=defaults.push_probability)
    parser.add_argument("--sampler", choices=TOY_SAMPLERS, default=defaults.sampler)
    parser.add_argument("--margin", type=float, default=defaults.margin)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--iterations", type=int, default=defaults.iterations)
    parser.add_argument("--embed-dim", type=int, choices=(2, 3), default=defaults.embed_dim)
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="runs in parallel, one process each (default: the cores, at most 2)",
    )
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    return args


def default_workers() -> int:
    """One process per core this process may use, at most 2 (the machine this was measured on)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(2, cores or 1))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = ToySettings(
        push_probability=args.push_probability,
        sampler=args.sampler,
        margin=args.margin,
        lr=args.lr,
        iterations=args.iterations,
        embed_dim=args.embed_dim,
    )

    def report(done: int, total: int) -> None:
        print(f"\r{done}/{total} runs", end="" if done < total else "\n", file=sys.stderr)

    study = run_study(args.modes, args.seeds, settings, progress=report, workers=args.workers)
    if args.json:
        atomic_write_json(args.json, study)
    if args.figure:
        from toy.figure import save_figure, toy_figure

        first_seed = study["seeds"][0]
        base = run_toy(replace(settings, mode="base", seed=first_seed))
        regularized = run_toy(replace(settings, mode="paper", seed=first_seed))
        save_figure(toy_figure(toy_data(first_seed), base, regularized, study), args.figure)
    print(markdown_table(study))
    return 0


if __name__ == "__main__":
    sys.exit(main())
