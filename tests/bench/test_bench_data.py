"""Micro-benchmark: mixtures generated on the device — :class:`TrainingData` epochs, in batches per second."""

from __future__ import annotations

import pytest
import torch

from sepbench.api import Task
from sepbench.cell_guards import training_images
from sepbench.datasets.mixtures import TrainingData

SINGLE = Task(((1.0, 1.0),), 2, 0.01)
DUAL = Task(((0.7, 0.3), (0.3, 0.7)), 2, 0.01)
BATCHES = 100  # per round: one epoch of 6,400 mixtures at batch 64


def _epoch(data: TrainingData) -> int:
    return sum(1 for _ in data.epoch(64))


@pytest.mark.benchmark(group="data: TrainingData epoch, 100 batches of 64")
@pytest.mark.parametrize("task", [SINGLE, DUAL], ids=["single", "dual"])
def test_bench_training_data_epoch(benchmark, mnist, task: Task) -> None:
    data = TrainingData(mnist.train, task, BATCHES * 64, seed=0)
    n = benchmark.pedantic(_epoch, args=(data,), rounds=10, warmup_rounds=1)
    assert n == BATCHES
    benchmark.extra_info["batches_per_s"] = BATCHES / benchmark.stats.stats.median
    benchmark.extra_info["mixtures_per_s"] = BATCHES * 64 / benchmark.stats.stats.median


@pytest.mark.benchmark(group="cell: the training images a cell hands its method (60,000 × 28 × 28 float32)")
@pytest.mark.parametrize("how", ["refilled buffer", "fresh copy"])
def test_bench_cell_training_images(benchmark, mnist, how: str) -> None:
    """What isolating a cell from the shared MNIST tensor costs per cell (sepbench.cell_guards)."""
    cpu, n = torch.device("cpu"), len(mnist.train)
    if how == "refilled buffer":
        own = benchmark.pedantic(training_images, args=(mnist.train, n, cpu), rounds=10, warmup_rounds=1)
    else:
        own = benchmark.pedantic(lambda: mnist.train[:n].clone(), rounds=10, warmup_rounds=0)
    assert torch.equal(own, mnist.train) and own.data_ptr() != mnist.train.data_ptr()
    benchmark.extra_info["ms_per_cell"] = 1e3 * benchmark.stats.stats.median
