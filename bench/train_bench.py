"""Training throughput of the ``glyphs`` preset on this machine: steps/s and images/s (JSON).

    python bench/train_bench.py --steps 30

Times ``Trainer.steps()`` after a warm-up, without evaluation; also times one evaluation pass
(test + eval_train embeddings and all metrics). ``--end-of-run`` times instead what a run does after
its last epoch (``store_run_evaluations``: the stored section in ``best`` and ``last``), embedding
both checkpoints again from their files versus keeping the embeddings the trainer's evaluations made.

    python bench/train_bench.py --end-of-run --repeats 3
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dml_core.config import TrainConfig
from dml_core.engine.evaluation import embed_checkpoint
from dml_core.engine.stored_evaluation import store_run_evaluations
from dml_core.engine.trainer import Trainer
from dml_core.presets import preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--end-of-run", action="store_true", help="time the end of a run instead")
    parser.add_argument("--repeats", type=int, default=3, help="with --end-of-run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.end_of_run:
        print(json.dumps(end_of_run(args.repeats), indent=2))
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
    metrics = trainer.evaluate()
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


if __name__ == "__main__":
    main()
