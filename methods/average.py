"""The floor every method must beat: each output is the upsampled observation divided evenly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch

from sepbench.api import SERVED_SOURCES, Method, Requirements, register_method
from sepbench.datasets.forward import upsample


@register_method("average")
class Average(Method):
    """Every output is ``up(Σ_k y_k) / Σ W``: for one detector with weights [1, 1], the observation halved; for
    colour ``(N, K, C, h, w)`` each channel on its own."""

    requires: ClassVar[Requirements] = Requirements(n_sources=SERVED_SOURCES, color=True)

    def separate(self, y: torch.Tensor) -> torch.Tensor:
        total_weight = float(self.task.weight_matrix().sum())
        total = y.sum(dim=1, keepdim=True)  # (N, 1, h, w), or (N, 1, C, h, w) for colour
        if total.dim() == 5:
            n, _, c, h, w = total.shape
            estimate = upsample(total.reshape(n, c, h, w), self.task.downsample).unsqueeze(1) / total_weight
            return estimate.expand(-1, self.task.n_sources, -1, -1, -1).contiguous()
        estimate = upsample(total, self.task.downsample) / total_weight
        return estimate.expand(-1, self.task.n_sources, -1, -1).contiguous()

    def save_state(self) -> dict[str, torch.Tensor]:
        """Nothing is learned: the task and the parameters on the model card are the whole kept method."""
        return {}

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        if state:
            raise ValueError(f"{self.name} keeps no state, got tensors {', '.join(sorted(state))}")
