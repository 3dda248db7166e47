"""The command line: ``train``, ``evaluate``, ``embed`` and ``report``.

Errors a user can cause (a bad path, an unknown name, an incompatible loss and miner, a foreign
checkpoint) print one line ``error: …`` and exit with status 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dml_core.config import PRESETS, TrainConfig, add_config_flags, config_from_args


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dml_core", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one run (flags = TrainConfig fields)")
    train.add_argument("--preset", help=f"one of: {', '.join(sorted(PRESETS))}")
    train.add_argument("--config", help="a JSON or YAML file of TrainConfig fields")
    train.add_argument("--out", help="run directory (default runs/<dataset>-<loss>-seed<seed>)")
    train.add_argument(
        "--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint"
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_flags(train)

    evaluate = commands.add_parser("evaluate", help="all metrics of a checkpoint, as JSON")
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--data-root", help="where the dataset lies now (default: as trained)")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--splits", nargs="+", default=["test", "eval_train"])

    embed = commands.add_parser("embed", help="write a split's embeddings to an .npz file")
    embed.add_argument("--checkpoint", required=True)
    embed.add_argument("--split", default="test", choices=["train", "test", "eval_train", "val"])
    embed.add_argument("--out", required=True)
    embed.add_argument("--data-root")
    embed.add_argument("--device", default="auto")

    report = commands.add_parser("report", help="mean ± std over seeds per method (Markdown, CSV)")
    report.add_argument("runs", nargs="+", help="run directories or folders of runs")
    report.add_argument("--metrics", nargs="+", help="metric keys such as test/recall@1")
    report.add_argument("--out", help="write OUT.md and OUT.csv as well")
    return parser


def _train(args: argparse.Namespace) -> int:
    from dml_core.engine.trainer import Trainer

    if args.resume:
        run_dir = Path(args.resume)
        config_path = run_dir / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"cannot resume {run_dir}: it holds no config.json")
        config = TrainConfig.from_dict(json.loads(config_path.read_text()))
        trainer = Trainer(
            config, run_dir, resume=True, progress=False if args.no_progress else None
        )
    else:
        config = config_from_args(args)
        out = args.out or f"runs/{config.dataset}-{config.loss}-seed{config.seed}"
        trainer = Trainer(config, out, progress=False if args.no_progress else None)
    final = trainer.run()
    trainer.context.shutdown()
    if trainer.context.is_main:
        print(json.dumps({"out": str(trainer.out_dir), **final}, indent=2))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from dml_core.engine.evaluation import evaluate_checkpoint

    metrics = evaluate_checkpoint(
        args.checkpoint, data_root=args.data_root, device=args.device, splits=tuple(args.splits)
    )
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


def _embed(args: argparse.Namespace) -> int:
    from dml_core.engine.checkpoint import load_checkpoint
    from dml_core.engine.evaluation import build_split, compute_embeddings, resolve_device
    from dml_core.io import atomic_save_npz

    device = resolve_device(args.device)
    model, metadata = load_checkpoint(args.checkpoint, device=device)
    config = TrainConfig.from_dict(metadata["config"])
    dataset = build_split(config, args.split, args.data_root)
    embeddings, labels = compute_embeddings(model, dataset, device=device, amp=config.amp)
    atomic_save_npz(
        args.out,
        embeddings=embeddings.cpu().numpy(),
        labels=labels,
        indices=list(range(len(labels))),
    )
    print(json.dumps({"out": args.out, "items": len(labels), "dim": int(embeddings.shape[1])}))
    return 0


def _report(args: argparse.Namespace) -> int:
    from dml_core.io import atomic_write_bytes
    from dml_core.report import DEFAULT_METRICS, summarise, to_csv, to_markdown

    metrics = args.metrics or list(DEFAULT_METRICS)
    rows, _ = summarise(args.runs, metrics)
    markdown = to_markdown(rows, metrics)
    if args.out:
        atomic_write_bytes(f"{args.out}.md", markdown.encode())
        atomic_write_bytes(f"{args.out}.csv", to_csv(rows).encode())
    print(markdown)
    return 0


COMMANDS = {"train": _train, "evaluate": _evaluate, "embed": _embed, "report": _report}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
