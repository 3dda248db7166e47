"""Training throughput of the ``glyphs`` preset on this machine: steps/s and images/s (JSON).

    python bench/train_bench.py --steps 30

Times ``Trainer.steps()`` after a warm-up, without evaluation; also times one evaluation pass
(test + eval_train embeddings and all metrics). ``--end-of-run`` times instead what a run does after
its last epoch (``store_run_evaluations``: the stored section in ``best`` and ``last``), embedding
both checkpoints again from their files versus keeping the embeddings the trainer's evaluations made.
``--embedding`` times embedding the ``glyphs-finetune`` test split (what every evaluation does per
split) from the whole split at once (``tensors()``) versus item by item through a DataLoader.

    python bench/train_bench.py --end-of-run --repeats 3
    python bench/train_bench.py --embedding --repeats 3
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from dml_core.config import TrainConfig
from dml_core.data import build_dataset
from dml_core.engine.evaluation import compute_embeddings, embed_checkpoint
from dml_core.engine.stored_evaluation import store_run_evaluations
from dml_core.engine.trainer import Trainer
from dml_core.models import build_model
from dml_core.presets import preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--end-of-run", action="store_true", help="time the end of a run instead")
    parser.add_argument("--embedding", action="store_true", help="time embedding a split instead")
    parser.add_argument("--repeats", type=int, default=3, help="with --end-of-run or --embedding")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.end_of_run:
        print(json.dumps(end_of_run(args.repeats), indent=2))
        return
    if args.embedding:
        print(json.dumps(embedding(args.repeats), indent=2))
        return

    config = TrainConfig.from_dict({**preset("glyphs"), "epochs": 1000, "eval_every": 1000})
    started = time.perf_counter()
    trainer = Trainer(config)
    setup_seconds = time.perf_counter() - started
    step_times = []
    events = trainer.steps()
    last = time.perf_counter()
    for event in events:
        if event["kind"] != "step":
            continue
        now = time.perf_counter()
        step_times.append(now - last)
        last = now
        if len(step_times) >= args.warmup + args.steps:
            break
    timed = step_times[args.warmup :]
    median = statistics.median(timed)
    started = time.perf_counter()
    metrics = trainer.evaluator.evaluate()
    eval_seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
                "torch": torch.__version__,
                "preset": "glyphs",
                "batch_size": config.batch_size,
                "steps_per_epoch": len(trainer.sampler),
                "setup_seconds": round(setup_seconds, 2),
                "median_step_seconds": round(median, 4),
                "steps_per_second": round(1 / median, 2),
                "images_per_second": round(config.batch_size / median, 1),
                "evaluation_seconds": round(eval_seconds, 2),
                "test_recall@1_untrained": round(metrics["test/recall@1"], 4),
            },
            indent=2,
        )
    )


def end_of_run(repeats: int) -> dict[str, object]:
    """Median seconds of ``store_run_evaluations`` on a short ``glyphs`` run, both ways."""
    config = TrainConfig.from_dict({**preset("glyphs"), "epochs": 1, "max_steps_per_epoch": 2})
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder) / "run"
        Trainer(config, run_dir, progress=False).run()
        kept = {k: embed_checkpoint(run_dir / f"{k}.safetensors", "test") for k in ("best", "last")}
        timings: dict[str, list[float]] = {"embedded_again": [], "kept_from_evaluation": []}
        for _ in range(repeats):
            for name, embedded in (("embedded_again", None), ("kept_from_evaluation", kept)):
                started = time.perf_counter()
                store_run_evaluations(run_dir, "cpu", embedded)
                timings[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(times) for name, times in timings.items()}
    return {
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
        "preset": "glyphs",
        "test_items": len(kept["last"].labels),
        "repeats": repeats,
        **{f"{name}_median_seconds": round(value, 2) for name, value in medians.items()},
        "ratio": round(medians["embedded_again"] / medians["kept_from_evaluation"], 2),
    }


class ItemsOnly(torch.utils.data.Dataset):
    """``dataset`` without ``tensors()``: embedded item by item through a DataLoader."""

    def __init__(self, dataset: Any) -> None:
        self.dataset, self.labels = dataset, dataset.labels

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]


def embedding(repeats: int) -> dict[str, object]:
    """Median seconds of ``compute_embeddings`` on the glyphs-finetune test split, both ways."""
    config = TrainConfig.from_dict(preset("glyphs-finetune"))
    model = build_model(config.arch, config.embed_dim, in_channels=1)
    model = model.to(memory_format=torch.channels_last)
    test = build_dataset(config.dataset, split="test", **config.dataset_options)
    sources = {"whole_split": test, "item_by_item": ItemsOnly(test)}
    timings: dict[str, list[float]] = {name: [] for name in sources}
    embedded = {}
    for _ in range(repeats):
        for name, dataset in sources.items():
            started = time.perf_counter()
            embedded[name] = compute_embeddings(model, dataset, device=torch.device("cpu"))[0]
            timings[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(times) for name, times in timings.items()}
    return {
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
        "preset": "glyphs-finetune",
        "test_items": len(test),
        "repeats": repeats,
        "equal": bool(torch.equal(embedded["whole_split"], embedded["item_by_item"])),
        **{f"{name}_median_seconds": round(value, 2) for name, value in medians.items()},
        "ratio": round(medians["item_by_item"] / medians["whole_split"], 2),
    }


if __name__ == "__main__":
    main()
