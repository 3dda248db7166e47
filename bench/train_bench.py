"""Training throughput of the ``glyphs`` preset on this machine: steps/s and images/s (JSON).

    python bench/train_bench.py --steps 30

Times ``Trainer.steps()`` after a warm-up, without evaluation; also times one evaluation pass
(test + eval_train embeddings and all metrics).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from dml_core.config import TrainConfig
from dml_core.engine.trainer import Trainer
from dml_core.presets import preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

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


if __name__ == "__main__":
    main()
