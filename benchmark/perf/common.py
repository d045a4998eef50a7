"""Helpers shared by the performance scripts: timing, machine load, and one training step as sepbench runs it."""

from __future__ import annotations

import itertools
import os
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from sepbench.api import Task
from sepbench.datasets.mixtures import Batch, TrainingData
from sepbench.methods.torch_method import TorchMethod
from sepbench.methods.training import make_optimiser
from sepbench.precision import autocast
from sepbench.registry import get_method

SINGLE = Task(((1.0, 1.0),), 2, 0.01)  # the paper's scenario: one detector sees x1 + x2, σ = 0.01
LEARNED = ("fcsae", "convsep", "ligt")


def load() -> str:
    """The 1-, 5- and 15-minute load averages, for the record (other work on the machine skews timings)."""
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def median_seconds(fn: Callable[[], Any], rounds: int, warmup: int = 1) -> float:
    """Median wall time of ``rounds`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def build_method(name: str, task: Task = SINGLE, **params: Any) -> TorchMethod:
    """A learned method by registry name (its built-in defaults unless ``params`` say otherwise)."""
    import sepbench.methods  # noqa: F401  (registers the built-in methods)

    method = get_method(name)(task, **params)
    if not isinstance(method, TorchMethod):
        raise SystemExit(f"{name} is not a learned (torch) method")
    return method


def training_step(method: TorchMethod, precision: str, device: torch.device | None = None, seed: int = 0,
                  compile_options: dict[str, Any] | None = None,
                  ) -> tuple[torch.nn.Module, Callable[[Batch], torch.Tensor]]:
    """A fresh network of ``method`` and one step of :func:`sepbench.methods.training.train_network`'s inner loop.

    The same pieces the loop uses: the method's network (channels-last where it asks, fast dropout on a CPU),
    the fused Adam of :func:`make_optimiser`, the method's loss under ``precision``'s autocast, backward, step.
    ``compile_options`` (e.g. ``{"backend": "inductor", "mode": "reduce-overhead"}``): the loss goes through
    ``torch.compile`` with them (its backward through AOTAutograd).
    """
    device = device or torch.device("cpu")
    torch.manual_seed(seed)
    net = method.make_network(device)
    net.train()
    optimiser = make_optimiser(net, 1e-3)

    def loss_of(batch: Batch) -> torch.Tensor:
        return method.training_loss(net, batch)

    if compile_options is not None:
        loss_of = torch.compile(loss_of, **compile_options)

    def step(batch: Batch) -> torch.Tensor:
        optimiser.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss = loss_of(batch)
        loss.backward()
        optimiser.step()
        return loss.detach()

    return net, step


def endless_batches(images: torch.Tensor, batch_size: int, seed: int = 0) -> Iterator[Batch]:
    """Fresh single-scenario batches without end, generated on ``images``' device as ``fit`` draws them."""
    return itertools.chain.from_iterable(
        TrainingData(images, SINGLE, batch_size * 50, seed=seed + epoch).epoch(batch_size)
        for epoch in itertools.count())


def run_steps(step: Callable[[Batch], torch.Tensor], batches: Iterable[Batch]) -> None:
    """Run ``step`` over ``batches``; one sync at the end (as the training loop syncs only to report)."""
    total = torch.zeros(())
    for batch in batches:
        total += step(batch)
    float(total)
