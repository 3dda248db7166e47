"""The command line: ``train``, ``evaluate``, ``embed``, ``report``, ``import`` and ``export``.

Errors a user can cause (a bad path, an unknown name, an incompatible loss and miner, a foreign
checkpoint) print one line ``error: …`` and exit with status 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dml_core.config import TrainConfig, add_config_flags
from dml_core.presets import PRESETS, config_from_args


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
    evaluated = evaluate.add_mutually_exclusive_group(required=True)
    evaluated.add_argument("--checkpoint")
    evaluated.add_argument("--embeddings", help="an embedding file: .npz, .npy, .parquet, .csv")
    evaluate.add_argument("--labels", help="the labels file of .npy embeddings")
    evaluate.add_argument("--ks", nargs="+", type=int, default=[1, 2, 4, 8], help="Recall@k")
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

    imported = commands.add_parser("import", help="a checkpoint trained elsewhere → .safetensors")
    imported.add_argument("source", help="official .pth/.tar, a state dict, or .safetensors")
    imported.add_argument("--out", required=True, help="the .safetensors file to write")
    imported.add_argument("--arch", help="resnet50, resnet18, small_cnn, mlp (default: inferred)")
    imported.add_argument("--dataset", help="dataset recorded in the config (evaluate, app)")
    imported.add_argument("--data-root")
    imported.add_argument("--no-normalize", action="store_true", help="no L2 normalisation")
    imported.add_argument("--allow-partial", action="store_true", help="accept missing keys")

    export = commands.add_parser("export", help="embeddings → TensorBoard projector, parquet, CSV")
    export.add_argument("source", help="a .safetensors checkpoint or an embedding file")
    export.add_argument("--format", required=True, choices=["tensorboard", "parquet", "csv"])
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--split", default="test", help="the checkpoint's split to embed")
    export.add_argument("--labels", help="the labels file of .npy embeddings")
    export.add_argument("--data-root")
    export.add_argument("--device", default="auto")
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

    if args.embeddings:
        from dml_core.interop import evaluate_embeddings, read_embeddings

        record = read_embeddings(args.embeddings, args.labels)
        print(json.dumps(evaluate_embeddings(record, args.ks), indent=2, sort_keys=True))
        return 0
    metrics = evaluate_checkpoint(
        args.checkpoint, data_root=args.data_root, device=args.device, splits=tuple(args.splits)
    )
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


def _embed(args: argparse.Namespace) -> int:
    from dml_core.engine.evaluation import embed_checkpoint
    from dml_core.io import atomic_save_npz

    embedded = embed_checkpoint(
        args.checkpoint, args.split, data_root=args.data_root, device=args.device
    )
    atomic_save_npz(
        args.out,
        embeddings=embedded.embeddings.cpu().numpy(),
        labels=embedded.labels,
        indices=embedded.indices,
    )
    items, dim = embedded.embeddings.shape
    print(json.dumps({"out": args.out, "items": int(items), "dim": int(dim)}))
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


def _import(args: argparse.Namespace) -> int:
    from dml_core.interop import import_checkpoint

    result = import_checkpoint(
        args.source,
        args.out,
        arch=args.arch,
        normalize=False if args.no_normalize else None,
        dataset=args.dataset,
        data_root=args.data_root,
        allow_partial=args.allow_partial,
    )
    print(json.dumps(result.summary(), indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    from dml_core.interop import export

    files = export(
        args.source,
        args.format,
        args.out,
        split=args.split,
        data_root=args.data_root,
        device=args.device,
        labels=args.labels,
    )
    print(json.dumps({"out": args.out, "files": [str(f) for f in files]}, indent=2))
    return 0


COMMANDS = {
    "train": _train,
    "evaluate": _evaluate,
    "embed": _embed,
    "report": _report,
    "import": _import,
    "export": _export,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
