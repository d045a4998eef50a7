"""The reference workload: a small convolutional separator trained for a second or two on one thread.

Its rate on this machine over its rate on the machine where the methods' ``cpu_mixtures_per_s`` were measured
is the machine's speed: the plan divides its estimates by it. The workload is plain torch (no method, no data):
what it measures is the CPU, not sepbench. Cells that run side by side (Ray: one per core) share caches, memory
bandwidth and, on SMT machines, cores: :func:`concurrent_rate` runs as many copies at once, in processes as the
cells are, and gives one copy's rate under that load (on a 2-vCPU EPYC, two at once ran each 1.55× slower).
"""

from __future__ import annotations

import multiprocessing
import time

import torch
from torch import nn

BATCH = 64
#: the reference workload's mixtures/s where the methods' rates were measured (benchmark/perf/rates.py prints both)
REFERENCE_RATE = 1000.0


def _network() -> nn.Module:
    return nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 2, 3, padding=1))


def reference_rate(seconds: float = 1.5, threads: int = 1, start: object | None = None) -> float:
    """Training mixtures/s of the reference workload on ``threads`` torch threads, timed for about ``seconds``
    after two warm-up steps (threads as a cell gets them: one, under Ray); ``start``, a barrier, is waited on
    between the warm-up and the timing (copies that run together start together)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        net = _network()
        optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
        y, x = torch.rand(BATCH, 1, 14, 14, generator=gen), torch.rand(BATCH, 2, 28, 28, generator=gen)

        def step() -> None:
            optimiser.zero_grad(set_to_none=True)
            nn.functional.mse_loss(net(y), x).backward()
            optimiser.step()

        for _ in range(2):
            step()
        if start is not None:
            start.wait()
        steps, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds or steps < 3:
            step()
            steps += 1
        return steps * BATCH / elapsed
    finally:
        torch.set_num_threads(saved)


def _copy(seconds: float, rounds: int, start: object, out: object) -> None:
    """One of :func:`concurrent_rate`'s processes: the best of ``rounds`` timed rounds, into ``out``."""
    out.put(max(reference_rate(seconds, start=start if i == 0 else None) for i in range(rounds)))


def concurrent_rate(seconds: float, rounds: int, copies: int) -> float:
    """One copy's mixtures/s (the best of ``rounds``) while ``copies`` copies of the workload run at once, each in
    its own process (started fresh: no fork of a process whose thread pools are running); the slowest copy's
    rate, as the run's last cells finish with it. ``copies`` ≤ 1: this process alone."""
    if copies <= 1:
        return max(reference_rate(seconds) for _ in range(rounds))
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(copies), context.Queue()
    workers = [context.Process(target=_copy, args=(seconds, rounds, start, out), daemon=True) for _ in range(copies)]
    for worker in workers:
        worker.start()
    try:
        rates = [out.get(timeout=120 + 2 * rounds * seconds) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
    return min(rates)
