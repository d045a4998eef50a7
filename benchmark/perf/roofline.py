"""Benchmark: how far training runs from this machine's limit.

For each learned method: FLOPs per training mixture (``torch.utils.flop_counter.FlopCounterMode`` over the
forward and backward pass of one batch of 64, divided by 64: matmuls and convolutions, which is where the
work is; element-wise ops are not counted), the training throughput (mixtures/s, median of alternating
rounds, fp32 and bf16), the FLOP/s that achieves, and its fraction of this machine's measured matmul peak
(``torch.mm`` of large square matrices, same thread count, same precision). CPU only: no GPU is lent to this
project's performance work, so the GPU side of the roofline is not measured here.

    .venv/bin/python -m sepbench.perf.roofline [--threads 2] [--methods fcsae,convsep,ligt] [--rounds 5]

With ``--threads 1`` the mixtures/s column is what a Ray cell (one thread) gets: the source of each method's
``cpu_mixtures_per_s``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from sepbench.datasets.mixtures import TrainingData
from sepbench.datasets.mnist import load_mnist
from sepbench.leaderboard.flops import count_training_flops
from sepbench.perf.common import LEARNED, SINGLE, build_method, load, run_steps, training_step

STEPS = {"fcsae": 40, "convsep": 3, "ligt": 6}


def matmul_peak(dtype: torch.dtype, n: int = 2048, rounds: int = 5) -> tuple[float, float]:
    """Best and median GFLOP/s of an ``n``×``n`` by ``n``×``n`` ``torch.mm`` in ``dtype``."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * n**3 / (time.perf_counter() - started) / 1e9)
    return max(rates), statistics.median(rates)


def flops_per_mixture(name: str, batch) -> tuple[float, float]:
    """(training: forward + backward, separation: forward in eval mode) FLOPs per mixture."""
    method = build_method(name)
    train = count_training_flops(method, batch)  # the leaderboard's count (sepbench.leaderboard.flops)
    net = method.build_network()
    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        method.predict(net, batch.y)
    return train, counter.get_total_flops() / len(batch.y)


def throughput(name: str, batches: list, rounds: int) -> dict[str, float]:
    """Median training mixtures/s in fp32 and bf16, rounds alternating between them."""
    method = build_method(name)
    steps = {p: training_step(method, p)[1] for p in ("fp32", "bf16")}
    for step in steps.values():
        run_steps(step, batches[:1])
    rates: dict[str, list[float]] = {p: [] for p in steps}
    for _ in range(rounds):
        for precision, step in steps.items():
            started = time.perf_counter()
            run_steps(step, batches)
            rates[precision].append(64 * len(batches) / (time.perf_counter() - started))
    return {p: statistics.median(r) for p, r in rates.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default=",".join(LEARNED))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"CPU only (no GPU is lent to this work); {args.threads} torch thread(s); {load()}")
    peaks = {}
    for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        best, median = matmul_peak(dtype)
        peaks[label] = best
        print(f"matmul peak {label}: {best:7.1f} GFLOP/s (median {median:.1f}), 2048² torch.mm")
    images = load_mnist().train
    print(f"\n{'method':8} {'train MFLOP/mix':>15} {'sep MFLOP/mix':>13} | {'prec':4} {'mix/s':>7} "
          f"{'GFLOP/s':>8} {'of peak':>8}")
    for name in args.methods.split(","):
        batches = list(TrainingData(images, SINGLE, STEPS.get(name, 6) * 64, seed=0).epoch(64))
        train_flops, sep_flops = flops_per_mixture(name, batches[0])
        rates = throughput(name, batches, args.rounds)
        for i, precision in enumerate(("fp32", "bf16")):
            achieved = train_flops * rates[precision] / 1e9
            lead = f"{name:8} {train_flops / 1e6:15.1f} {sep_flops / 1e6:13.1f}" if i == 0 else " " * 38
            print(f"{lead} | {precision:4} {rates[precision]:7.1f} {achieved:8.1f} "
                  f"{100 * achieved / peaks[precision]:7.1f}%", flush=True)
    print(load())


if __name__ == "__main__":
    main()
