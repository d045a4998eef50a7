"""Benchmark: what generating mixtures on the device costs, as a fraction of a training step.

For each learned method, training steps at batch 64 run (a) on batches that :class:`TrainingData` generates
on the fly, as ``fit`` does, and (b) on the same number of batches generated beforehand (pre-made tensors).
Rounds of (a) and (b) alternate so that load on the machine hits both alike; medians are reported, with
(c) the generation alone. The data path's share is ``(a - b) / a`` (and, less noisy, ``c / a``): target < 5 %.

    .venv/bin/python -m sepbench.perf.data_path [--methods fcsae,convsep,ligt] [--precisions fp32,bf16]
        [--threads 1] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sepbench.datasets.mixtures import TrainingData
from sepbench.datasets.mnist import load_mnist
from sepbench.perf.common import LEARNED, SINGLE, build_method, load, run_steps, training_step

STEPS = {"fcsae": 40, "convsep": 4, "ligt": 8}  # steps per timed round: each round about a second or two


def measure(name: str, precision: str, images: torch.Tensor, rounds: int, batch_size: int = 64) -> dict:
    """Median seconds per step: generated batches, pre-made batches, and generation alone."""
    method = build_method(name)
    steps = STEPS.get(name, 8)
    data = TrainingData(images, SINGLE, steps * batch_size, seed=0)
    _, step = training_step(method, precision)
    run_steps(step, data.epoch(batch_size))  # warm-up: oneDNN primitives, allocator
    generated, premade, generation = [], [], []
    for _ in range(rounds):
        started = time.perf_counter()
        run_steps(step, data.epoch(batch_size))
        generated.append((time.perf_counter() - started) / steps)
        batches = list(data.epoch(batch_size))
        started = time.perf_counter()
        run_steps(step, batches)
        premade.append((time.perf_counter() - started) / steps)
        started = time.perf_counter()
        for _batch in data.epoch(batch_size):
            pass
        generation.append((time.perf_counter() - started) / steps)
    a, b, c = (statistics.median(x) for x in (generated, premade, generation))
    return {"method": name, "precision": precision, "generated_ms": 1e3 * a, "premade_ms": 1e3 * b,
            "generation_ms": 1e3 * c, "share_ab": (a - b) / a, "share_direct": c / a}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(LEARNED))
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (a Ray cell gets 1)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = load_mnist().train  # all 60,000 training digits, as a cell holds them
    print(f"data path vs training step, batch 64, {args.threads} thread(s), {args.rounds} rounds; {load()}")
    print(f"{'method':8} {'prec':5} {'generated':>11} {'pre-made':>11} {'generation':>11} "
          f"{'(a-b)/a':>8} {'c/a':>7}")
    for name in args.methods.split(","):
        for precision in args.precisions.split(","):
            r = measure(name, precision, images, args.rounds)
            print(f"{name:8} {precision:5} {r['generated_ms']:9.2f}ms {r['premade_ms']:9.2f}ms "
                  f"{r['generation_ms']:9.3f}ms {100 * r['share_ab']:7.2f}% {100 * r['share_direct']:6.2f}%",
                  flush=True)
    print(load())


if __name__ == "__main__":
    main()
