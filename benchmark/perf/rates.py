"""Benchmark: each learned method's training rate beside the calibration's reference workload, measured together.

A method's rate over the reference workload's is a property of the code, nearly independent of how loaded or how
fast the machine is: rounds alternate between the two, so both see the same load. The printed ``declare`` column is
the method's rate at the reference rate ``sepbench.calibration.reference.REFERENCE_RATE``: what its
``cpu_mixtures_per_s`` (or ``cpu_rate``) should say. One torch thread, as a Ray cell gets.

    .venv/bin/python -m sepbench.perf.rates [--grid quick] [--rounds 3]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch

from sepbench.calibration.reference import REFERENCE_RATE, reference_rate
from sepbench.datasets.mnist import load_mnist
from sepbench.grid import load_grid
from sepbench.grid_model import MethodEntry
from sepbench.perf.common import build_method, endless_batches, load, run_steps, training_step
from sepbench.registry import get_method


def method_rate(entry: MethodEntry, batch_size: int, images: torch.Tensor, seconds: float) -> float:
    """Training mixtures/s of a grid entry (its parameters and batch size, fp32: the rate a method declares)
    on one detector."""
    method = build_method(entry.method, **entry.params)
    _, step = training_step(method, "fp32")
    batches = endless_batches(images, batch_size)
    run_steps(step, itertools.islice(batches, 2))
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or steps < 2:
        run_steps(step, itertools.islice(batches, 1))
        steps += 1
    return steps * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="quick")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    grid = load_grid(args.grid)
    images = load_mnist().train[:10000]
    print(f"{load()}; one thread; reference workload's declared rate {REFERENCE_RATE:g} mixtures/s")
    print(f"{'label':18} {'method':13} {'mixtures/s':>10} {'reference':>10} {'ratio':>7} {'declare':>8}")
    for entry in grid.methods:
        if not get_method(entry.method).requires.needs_training:
            continue
        ratios, rates, refs = [], [], []
        for _ in range(args.rounds):
            refs.append(reference_rate(args.seconds / 2))
            rates.append(method_rate(entry, grid.budget_for(entry).batch_size, images, args.seconds))
            ratios.append(rates[-1] / refs[-1])
        ratio = statistics.median(ratios)
        print(f"{entry.label:18} {entry.method:13} {statistics.median(rates):10.1f} {statistics.median(refs):10.1f} "
              f"{ratio:7.4f} {ratio * REFERENCE_RATE:8.1f}", flush=True)


if __name__ == "__main__":
    main()
