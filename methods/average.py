"""The floor every method must beat: each output is the upsampled observation divided evenly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch

from sepbench.api import SERVED_SOURCES, Method, Requirements, register_method
from sepbench.datasets.forward import upsample


@register_method("average")
class Average(Method):
    """Every output is ``up(Σ_k y_k) / Σ W``: for one detector with weights [1, 1], the observation halved."""

    requires: ClassVar[Requirements] = Requirements(n_sources=SERVED_SOURCES)

    def separate(self, y: torch.Tensor) -> torch.Tensor:
        total_weight = float(self.task.weight_matrix().sum())
        estimate = upsample(y.sum(dim=1, keepdim=True), self.task.downsample) / total_weight
        return estimate.expand(-1, self.task.n_sources, -1, -1).contiguous()

    def save_state(self) -> dict[str, torch.Tensor]:
        """Nothing is learned: the task and the parameters on the model card are the whole kept method."""
        return {}

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        if state:
            raise ValueError(f"{self.name} keeps no state, got tensors {', '.join(sorted(state))}")
