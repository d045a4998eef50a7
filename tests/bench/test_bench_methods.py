"""Micro-benchmarks: each learned method's training step (batch 64, generated batches, as ``fit`` runs it) and
its separation throughput (1,024 mixtures), in fp32 and bf16 autocast."""

from __future__ import annotations

import pytest
import torch

from sepbench.api import FitContext, TrainBudget
from sepbench.datasets.mixtures import TrainingData, make_test_set
from sepbench.perf.common import LEARNED, SINGLE, build_method, endless_batches, training_step

PRECISIONS = ("fp32", "bf16")
ROUNDS = {"fcsae": 30, "convsep": 4, "ligt": 6}


@pytest.mark.benchmark(group="train step, batch 64")
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", LEARNED)
def test_bench_training_step(benchmark, mnist, name: str, precision: str) -> None:
    method = build_method(name)
    _, step = training_step(method, precision)
    batches = endless_batches(mnist.train, 64)
    loss = benchmark.pedantic(lambda: float(step(next(batches))), rounds=ROUNDS[name], warmup_rounds=2)
    assert loss == loss  # not NaN
    benchmark.extra_info["mixtures_per_s"] = 64 / benchmark.stats.stats.median


@pytest.mark.benchmark(group="separate 1,024 mixtures")
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", LEARNED)
def test_bench_separation(benchmark, mnist, name: str, precision: str) -> None:
    method = build_method(name)
    data = TrainingData(mnist.train, SINGLE, 64, seed=0, n_validation=64)
    method.fit(data, FitContext(budget=TrainBudget(mixtures=64, epochs=1, precision=precision)))
    assert method.precision_ == precision
    y = make_test_set(mnist.test, SINGLE, 1024, "mnist:60000:10000").y
    out = benchmark.pedantic(method.separate, args=(y,), rounds=ROUNDS[name] // 2 + 1, warmup_rounds=1)
    assert out.shape == (1024, 2, 28, 28) and out.dtype == torch.float32
    benchmark.extra_info["mixtures_per_s"] = 1024 / benchmark.stats.stats.median
