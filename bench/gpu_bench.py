"""GPU benchmark, ready for a lent card; finishes within about 5 minutes (JSON on stdout).

    python bench/gpu_bench.py [--steps 20] [--eval-size 60000]

1. ResNet50 (frozen BN, 128-d head), batch 112 of 224×224 synthetic tensors: images/s of a full
   training step in fp32 versus bf16 autocast + channels_last, in the same run.
2. The ρ-regularized distance-weighted miner and the margin loss (forward + backward) at batch 112.
3. The evaluation suite (every retrieval and embedding-space metric) on 60,000 × 128 embeddings
   held on the GPU (chunked torch kNN).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from dml_core.losses import build_loss
from dml_core.metrics import embedding_space_metrics, retrieval_metrics
from dml_core.miners import build_miner
from dml_core.models import build_model


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn`` over ``repeats`` calls (after one warm-up), synchronised."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def training_step_seconds(device: torch.device, steps: int, fast: bool) -> float:
    model = build_model("resnet50", 128, frozen_bn=True).to(device)
    if fast:
        model = model.to(memory_format=torch.channels_last)
    loss = build_loss("margin", num_classes=56).to(device)
    miner = build_miner("distance", rho=0.35, seed=0)
    optimizer = torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=1e-5)
    inputs = torch.randn(112, 3, 224, 224, device=device)
    if fast:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    labels = torch.arange(56, device=device).repeat_interleave(2)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
            embeddings = model(inputs)
        embeddings = embeddings.float()
        value = loss(embeddings, labels, miner(embeddings, labels))
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()

    return timed(step, steps, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--eval-size", type=int, default=60_000)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result: dict[str, object] = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
    }
    torch.backends.cudnn.benchmark = True
    for name, fast in (("fp32", False), ("bf16_channels_last", True)):
        seconds = training_step_seconds(device, args.steps, fast)
        result[f"resnet50_{name}_step_seconds"] = round(seconds, 4)
        result[f"resnet50_{name}_images_per_second"] = round(112 / seconds, 1)
    result["bf16_speedup"] = round(
        result["resnet50_bf16_channels_last_images_per_second"]
        / result["resnet50_fp32_images_per_second"],
        2,
    )

    embeddings = torch.nn.functional.normalize(torch.randn(112, 128, device=device), dim=1)
    embeddings.requires_grad_(True)
    labels = torch.arange(56, device=device).repeat_interleave(2)
    miner = build_miner("distance", rho=0.35, seed=0)
    loss = build_loss("margin", num_classes=56).to(device)
    result["rho_distance_miner_ms"] = round(
        1e3 * timed(lambda: miner(embeddings, labels), 50, device), 3
    )

    def loss_step() -> None:
        loss(embeddings, labels, miner(embeddings, labels)).backward()

    result["rho_miner_plus_margin_loss_ms"] = round(1e3 * timed(loss_step, 50, device), 3)

    generator = torch.Generator(device=device).manual_seed(0)
    num_classes = args.eval_size // 50
    centres = torch.randn(num_classes, 128, device=device, generator=generator)
    eval_labels = torch.arange(num_classes, device=device).repeat_interleave(50)
    noise = 0.7 * torch.randn(len(eval_labels), 128, device=device, generator=generator)
    eval_embeddings = torch.nn.functional.normalize(centres[eval_labels] + noise, dim=1)

    def suite() -> None:
        retrieval_metrics(eval_embeddings, eval_labels)
        embedding_space_metrics(eval_embeddings, eval_labels)

    result[f"evaluation_suite_{args.eval_size}_seconds"] = round(timed(suite, 2, device), 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
