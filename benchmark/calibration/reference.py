"""The reference workload: a small convolutional separator trained for a second or two on one thread.

Its rate on this machine over its rate on the machine where the methods' ``cpu_mixtures_per_s`` were measured
is the machine's speed: the plan divides its estimates by it. The workload is plain torch (no method, no data):
what it measures is the CPU, not sepbench.
"""

from __future__ import annotations

import time

import torch
from torch import nn

BATCH = 64
#: the reference workload's mixtures/s where the methods' rates were measured (benchmark/perf/rates.py prints both)
REFERENCE_RATE = 1000.0


def _network() -> nn.Module:
    return nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 2, 3, padding=1))


def reference_rate(seconds: float = 1.5, threads: int = 1) -> float:
    """Training mixtures/s of the reference workload on ``threads`` torch threads, timed for about ``seconds``
    after two warm-up steps (threads as a cell gets them: one, under Ray)."""
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
        steps, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds or steps < 3:
            step()
            steps += 1
        return steps * BATCH / elapsed
    finally:
        torch.set_num_threads(saved)
