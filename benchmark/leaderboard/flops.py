"""Training FLOPs per mixture of a learned method, counted without computing anything.

``torch.utils.flop_counter.FlopCounterMode`` over one training step (the method's own ``training_loss`` on a batch
of the cell's size, and its backward pass), with the network and the batch on PyTorch's ``meta`` device: shapes
only, no arithmetic, so a 2-million-parameter network is counted in a fraction of a second on any machine. It
counts matrix multiplications, convolutions and attention (where the work is), not element-wise operations, so
it is a lower bound of the work done. Used by ``bench leaderboard`` (training FLOPs beside core-seconds: a
budget that no hardware changes) and by the roofline benchmark.
"""

from __future__ import annotations

import logging

import torch
from torch.utils.flop_counter import FlopCounterMode

from sepbench.api import Task
from sepbench.datasets.forward import forward_options
from sepbench.datasets.mixtures import Batch, mix

log = logging.getLogger(__name__)


def synthetic_batch(task: Task, batch_size: int, seed: int = 0) -> Batch:
    """A batch of ``batch_size`` mixtures of random images with ``task``'s shapes, through its forward model."""
    gen = torch.Generator().manual_seed(seed)
    channels = (task.channels,) if task.channels > 1 else (1,)
    images = torch.rand(max(2 * task.n_sources, 4), *channels, *task.source_shape, generator=gen)
    pairs = torch.randint(0, len(images), (batch_size, task.n_sources), generator=gen)
    return mix(images, pairs, task.weight_matrix(), task.downsample, task.sigma, gen, **forward_options(task))


def count_training_flops(method, batch: Batch, device: torch.device | str = "meta") -> float:
    """FLOPs of one training step of ``method`` (a :class:`~sepbench.methods.torch_method.TorchMethod`) on
    ``batch``, per mixture: forward and backward of its training loss, a fresh network built on ``device``."""
    device = torch.device(device)
    with torch.device(device):
        net = method.build_network()
    net.train()
    moved = Batch(*(t.to(device) for t in batch))
    with FlopCounterMode(display=False) as counter:
        method.training_loss(net, moved).backward()
    return counter.get_total_flops() / len(batch.y)


def training_flops_per_mixture(method_name: str, params: dict, task: Task, batch_size: int) -> float | None:
    """Training FLOPs per mixture of registered method ``method_name`` with ``params`` on ``task`` at
    ``batch_size`` (a few methods' cost depends on it), or None where that cannot be known: the method trains no
    network, or its training step does something the ``meta`` device cannot (reads a value, say)."""
    from sepbench.registry import get_method

    try:
        method = get_method(method_name)(task, **params)
        if not callable(getattr(method, "build_network", None)) or not callable(
                getattr(method, "training_loss", None)):
            return None
        return count_training_flops(method, synthetic_batch(task, batch_size))
    except Exception as exc:  # noqa: BLE001 — a plugin's network may not run on the meta device: unknown, said once
        log.info("training FLOPs of %s not counted: %s: %s", method_name, type(exc).__name__, exc)
        return None


__all__ = ["count_training_flops", "synthetic_batch", "training_flops_per_mixture"]
