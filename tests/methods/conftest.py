"""Tiny shared fixtures for method tests: digit-like stroke images, the two scenarios, data and contexts."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

from sepbench.api import FitContext, Task, TrainBudget
from sepbench.datasets.mixtures import TrainingData

SINGLE = Task(((1.0, 1.0),), 2, 0.01)
DUAL = Task(((0.7, 0.3), (0.3, 0.7)), 2, 0.01)


def stroke_images(n: int, seed: int = 0, strokes: int = 3, size: int = 28) -> torch.Tensor:
    """``(n, size, size)`` images in [0, 1]: a few thick, soft line segments each, roughly digit-like."""
    gen = torch.Generator().manual_seed(seed)
    ends = 6 + (size - 12) * torch.rand(n, strokes, 2, 2, generator=gen)  # (n, stroke, end, xy)
    axis = torch.arange(size, dtype=torch.float32)
    coords = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).reshape(1, 1, -1, 2)
    a, b = ends[:, :, :1], ends[:, :, 1:]                                  # (n, stroke, 1, 2)
    ab = b - a
    t = (((coords - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-6)).clamp(0, 1)
    dist = (coords - (a + t.unsqueeze(-1) * ab)).norm(dim=-1)             # (n, stroke, size²)
    return (2.0 - dist).clamp(0, 1).amax(dim=1).reshape(n, size, size)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run each test on one intra-op thread: on a busy 2-core machine, 2 OpenMP threads can be 100× slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def single_task() -> Task:
    """One detector sees x1 + x2 (the paper's scenario)."""
    return SINGLE


@pytest.fixture(scope="session")
def dual_task() -> Task:
    """Two detectors see complementary weighted mixtures."""
    return DUAL


@pytest.fixture(scope="session")
def digits() -> torch.Tensor:
    """300 synthetic stroke images, the stand-in for MNIST in method tests."""
    return stroke_images(300, seed=0)


@pytest.fixture
def make_data(digits: torch.Tensor) -> Callable[..., TrainingData]:
    """Build :class:`TrainingData` for a task from the stroke images."""

    def make(task: Task = SINGLE, n_mixtures: int = 64, seed: int = 0, n_validation: int | None = None
             ) -> TrainingData:
        return TrainingData(digits, task, n_mixtures, seed, n_validation=n_validation)

    return make


def context(mixtures: int = 64, epochs: int = 1, batch_size: int = 32, lr: float = 1e-3) -> FitContext:
    """A CPU fit context with a tiny budget."""
    return FitContext(device=torch.device("cpu"), seed=0,
                      budget=TrainBudget(mixtures=mixtures, epochs=epochs, batch_size=batch_size, lr=lr))


@pytest.fixture
def fit_context() -> Callable[..., FitContext]:
    """Factory for tiny-budget CPU fit contexts."""
    return context
