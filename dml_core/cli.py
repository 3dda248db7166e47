"""The command line: ``train``, ``evaluate``, ``embed``, ``project`` (store a checkpoint's
evaluation), ``report``, ``import``, ``export`` and ``study`` (``run``, ``status``, ``results``).

Errors a user can cause (a bad path, an unknown name, an incompatible loss and miner, a foreign
checkpoint, a bad config file, a full disk, a folder another run holds) print one line
``error: …`` on stderr and exit with status 2 instead of a traceback (``--debug``: the traceback);
Ctrl-C before training starts exits with status 130 and one line. Warnings are one line each.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
import warnings
from pathlib import Path

from dml_core.config import TrainConfig, add_config_flags, load_config_file
from dml_core.presets import PRESETS, config_from_args


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``error: argument --epochs: …``), status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="python -m dml_core", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks (anywhere in argv)")
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
    evaluate.add_argument(
        "--approximate",
        choices=["hnsw", "ivf"],
        help="approximate kNN index and sampled k-means, for 100k+ items (default: exact)",
    )

    embed = commands.add_parser("embed", help="write a split's embeddings to an .npz file")
    embed.add_argument("--checkpoint", required=True)
    embed.add_argument("--split", default="test", choices=["train", "test", "eval_train", "val"])
    embed.add_argument("--out", required=True)
    embed.add_argument("--data-root")
    embed.add_argument("--device", default="auto")
    embed.add_argument(
        "--no-store", action="store_true", help="leave the checkpoint's stored evaluation as it is"
    )

    project = commands.add_parser(
        "project",
        help="store the test split's evaluation and projections in checkpoints, and the "
        "projections of embedding files in <file>.projection.npz beside them",
    )
    project.add_argument(
        "checkpoints",
        nargs="+",
        help=".safetensors checkpoints to update, or embedding files (.npz/.npy/.parquet/.csv)",
    )
    project.add_argument("--data-root", help="where the dataset lies now (default: as trained)")
    project.add_argument("--device", default="auto")
    project.add_argument("--no-umap", action="store_true", help="store PCA only")

    report = commands.add_parser("report", help="mean ± std over seeds per method (Markdown, CSV)")
    report.add_argument("runs", nargs="+", help="run directories or folders of runs")
    report.add_argument("--metrics", nargs="+", help="metric keys such as test/recall@1")
    report.add_argument("--out", help="write OUT.md and OUT.csv as well")

    imported = commands.add_parser("import", help="a checkpoint trained elsewhere → .safetensors")
    imported.add_argument(
        "source",
        nargs="+",
        help="official .pth/.tar, a state dict, .safetensors; or a PML trunk and embedder "
        "(TRUNK.pth EMBEDDER.pth, or PML's saved_models folder)",
    )
    imported.add_argument("--out", required=True, help="the .safetensors file to write")
    imported.add_argument("--arch", help="resnet50, resnet18, small_cnn, mlp (default: inferred)")
    imported.add_argument("--dataset", help="dataset recorded in the config (evaluate, app)")
    imported.add_argument("--data-root")
    imported.add_argument("--no-normalize", action="store_true", help="no L2 normalisation")
    imported.add_argument("--allow-partial", action="store_true", help="accept missing keys")
    imported.add_argument(
        "--iteration", help="in a PML saved_models folder: best (default), latest, N or bestN"
    )

    export = commands.add_parser("export", help="embeddings → TensorBoard projector, parquet, CSV")
    export.add_argument("source", help="a .safetensors checkpoint or an embedding file")
    export.add_argument("--format", required=True, choices=["tensorboard", "parquet", "csv"])
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--split", default="test", help="the checkpoint's split to embed")
    export.add_argument("--labels", help="the labels file of .npy embeddings")
    export.add_argument("--data-root")
    export.add_argument("--device", default="auto")
    _study_parser(commands)
    return parser


def _study_parser(commands: argparse._SubParsersAction) -> None:
    study = commands.add_parser("study", help="run a study file's runs, show them, write results")
    actions = study.add_subparsers(dest="study_command", required=True)
    run = actions.add_parser("run", help="train the missing runs of a study (or of one shard)")
    run.add_argument("study_file", metavar="STUDY.yaml")
    run.add_argument(
        "--shard", help="i/n: every n-th task from the i-th (default: the Slurm array's, else 1/1)"
    )
    run.add_argument("--jobs", type=int, default=1, help="runs at a time (one thread each)")
    run.add_argument("--out", help="where runs and summaries go (default: the study file's)")
    status = actions.add_parser("status", help="finished / running / missing per method and seed")
    status.add_argument("study_file", metavar="STUDY.yaml")
    status.add_argument("--out", help="the --out DIR the study runs with")
    results = actions.add_parser("results", help="one page (Markdown), curves and CSV")
    results.add_argument("study_files", nargs="+", metavar="STUDY.yaml")
    results.add_argument("--out", help="the page to write (default: print it)")
    results.add_argument(
        "--from",
        dest="folders",
        action="append",
        metavar="DIR",
        help="the --out DIR each study ran with, in order (default: the study files' folders)",
    )


def _study(args: argparse.Namespace) -> int:
    from dml_core.study import load_spec
    from dml_core.study.runner import run, status_lines

    if args.study_command == "results":
        from dml_core.study.page import results_page, write_results

        folders = args.folders or [None] * len(args.study_files)
        if len(folders) != len(args.study_files):
            raise ValueError(
                f"--from given {len(folders)} time(s) for {len(args.study_files)} study file(s)"
            )
        specs = [
            load_spec(path).with_output(folder)
            for path, folder in zip(args.study_files, folders, strict=True)
        ]
        if args.out:
            write_results(specs, Path(args.out))
            print(f"wrote {args.out}")
        else:
            print(results_page(specs))
        return 0
    spec = load_spec(args.study_file).with_output(args.out)
    if args.study_command == "status":
        print("\n".join(status_lines(spec, args.out)))
        return 0
    return 0 if run(spec, args.shard, args.jobs) == 0 else 1


def _train(args: argparse.Namespace) -> int:
    if args.resume:
        out = Path(args.resume)
        config_path = out / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"cannot resume {out}: it holds no config.json")
        config = TrainConfig.from_dict(load_config_file(config_path))
    else:
        config = config_from_args(args)
        out = args.out or f"runs/{config.dataset}-{config.loss}-seed{config.seed}"
    config.validate()  # a bad value is one line before the trainer's imports (torchvision, data)
    from dml_core.engine.trainer import Trainer

    progress = False if args.no_progress else None
    trainer = Trainer(config, out, resume=bool(args.resume), progress=progress)
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
        metrics = evaluate_embeddings(record, args.ks, approximate=args.approximate)
        print(json.dumps(metrics, indent=2, sort_keys=True))
        return 0
    metrics = evaluate_checkpoint(
        args.checkpoint,
        data_root=args.data_root,
        device=args.device,
        splits=tuple(args.splits),
        approximate=args.approximate,
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
    stored = args.split == "test" and not args.no_store
    if stored:
        from dml_core.engine.stored_evaluation import store_embedded

        store_embedded(args.checkpoint, embedded)
    print(json.dumps({"out": args.out, "items": int(items), "dim": int(dim), "stored": stored}))
    return 0


def _project(args: argparse.Namespace) -> int:
    """The stored evaluation (docs/DESIGN.md §6) for each checkpoint, the stored projections
    (``<file>.projection.npz``) for each embedding file; files that are not DML Explorer
    checkpoints (a bare backbone) are skipped with one line each. One file, or every file
    skipped: an error (status 2)."""
    from dml_core.engine.checkpoint_header import CheckpointError
    from dml_core.engine.projection import INTERACTIVE
    from dml_core.engine.stored_evaluation import evaluate_and_store

    skipped = 0
    for checkpoint in args.checkpoints:
        if Path(checkpoint).suffix.lower() in (".npz", ".npy", ".parquet", ".csv"):
            from dml_core.interop.projection_file import store_file_projection

            print(
                json.dumps(store_file_projection(checkpoint, None if args.no_umap else INTERACTIVE))
            )
            continue
        try:
            stored = evaluate_and_store(
                checkpoint,
                data_root=args.data_root,
                device=args.device,
                umap=None if args.no_umap else INTERACTIVE,
            )
        except CheckpointError as error:
            if len(args.checkpoints) == 1:
                raise
            print(f"skipped: {error}", file=sys.stderr)
            skipped += 1
            continue
        summary = {
            "checkpoint": checkpoint,
            "items": len(stored),
            "umap": stored.umap is not None,
            "test/recall@1": stored.metrics.get("test/recall@1"),
        }
        print(json.dumps(summary))
    if skipped == len(args.checkpoints):
        raise ValueError(f"every checkpoint was skipped ({skipped}); none was updated")
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
        iteration=args.iteration,
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
    "project": _project,
    "report": _report,
    "import": _import,
    "export": _export,
    "study": _study,
}


def _one_line(error: BaseException) -> str:
    """The first line of an error's message, naming the file for OS errors; never torch's
    ``weights_only=False`` advice (following it would run a file's code)."""
    if isinstance(error, OSError) and error.filename and error.strerror:
        text = f"{error.filename}: {error.strerror}"
    else:
        lines = str(error).strip().splitlines()
        text = lines[0] if lines else type(error).__name__
    if "weights_only" in text:
        text = "a file could not be read safely (it holds more than tensors and plain values)"
    return text


def _warning_line(message: Warning | str, *_: object) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    args = _parser().parse_args(argv)
    if not debug:
        warnings.formatwarning = _warning_line
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("error: interrupted (Ctrl-C) before training started", file=sys.stderr)
        return 130
    except Exception as error:
        if debug:
            traceback.print_exc()
        if not isinstance(error, ValueError | OSError | ArithmeticError):
            print(
                f"error: {type(error).__name__}: {_one_line(error)} (--debug shows the traceback)",
                file=sys.stderr,
            )
        else:
            print(f"error: {_one_line(error)}", file=sys.stderr)
        return 2
