"""Fully connected stacked autoencoder (DeGuchy, Ho & Marcia, 2019): flattened observations → S images."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from sepbench.api import SERVED_SOURCES, Param, Requirements, Resources, register_method
from sepbench.methods.losses import LOSS_MODES
from sepbench.methods.torch_method import TorchMethod


class StackedAutoencoder(nn.Module):
    """Fully connected layers with ReLU from K·(C·)h·w inputs to S·(C·)H·W sigmoid outputs of ``out_shape``
    (``(S, H, W)``, or ``(S, C, H, W)`` for colour)."""

    def __init__(self, n_inputs: int, out_shape: tuple[int, ...], hidden: int, depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = n_inputs
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        n_out = math.prod(out_shape)
        layers += [nn.Linear(width, n_out), nn.Sigmoid(), nn.Unflatten(1, out_shape)]
        self.layers = nn.Sequential(*layers)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.layers(y)


@register_method("fcsae")
class FCSAE(TorchMethod):
    """The fully connected baseline of the paper's reference [8]; large, but a strong learned baseline."""

    requires: ClassVar[Requirements] = Requirements(needs_training=True, n_sources=SERVED_SOURCES, color=True)
    #: 16 cells per GPU: the total training rate still rose at 16 on an H200 (docs/performance.md); one CPU each
    resources: ClassVar[Resources] = Resources(cpu=1, gpu=0.0625)

    parameters: ClassVar[dict[str, Param]] = {
        "loss": Param("fixed", str, choices=LOSS_MODES, help="fixed-order targets or permutation-invariant"),
        "hidden": Param(1024, int, positive=True, help="width of each hidden layer"),
        "depth": Param(2, int, positive=True, help="number of hidden layers"),
    }
    cpu_mixtures_per_s = 1200.0  # estimates from measured rates (docs/performance.md, "Rates behind the code")
    cpu_bf16_speedup = 1.5
    cpu_chunk = 1024  # dense layers want long matrices (docs/performance.md, "Rates behind the code")

    def build_network(self) -> nn.Module:
        task = self.task
        h, w = task.observation_shape
        colour = (task.channels,) if task.channels > 1 else ()
        out_shape = (task.n_sources, *colour, *task.source_shape)
        return StackedAutoencoder(task.n_observations * task.channels * h * w, out_shape, self.params["hidden"],
                                  self.params["depth"])
