"""The modern training option shared by the reference separators: AdamW with warm-up and cosine decay, or the
paper's Adam at a constant learning rate (``schedule: constant``), chosen per grid entry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import nn

from sepbench import Param, Task, TorchMethod, TrainBudget
from sepbench.errors import ParameterError
from sepbench.methods.training import adamw_cosine, default_optimiser

SCHEDULE_PARAMS: dict[str, Param] = {
    "schedule": Param("cosine", str, choices=("cosine", "constant"),
                      help="AdamW + warm-up + cosine decay, or the paper's Adam at a constant lr"),
    "weight_decay": Param(0.01, float, help="AdamW's decoupled weight decay (schedule: cosine)"),
}


class ScheduledTorchMethod(TorchMethod):
    """A :class:`TorchMethod` whose parameters include :data:`SCHEDULE_PARAMS` (merge them into ``parameters``)."""

    parameters: ClassVar[dict[str, Param]] = dict(SCHEDULE_PARAMS)

    @classmethod
    def check_params(cls, params: Mapping[str, Any], task: Task) -> None:
        super().check_params(params, task)
        if params["weight_decay"] < 0:
            raise ParameterError(f"method {cls.name!r}: parameter 'weight_decay' must be >= 0, "
                                 f"got {params['weight_decay']}")

    def configure_optimiser(self, net: nn.Module, budget: TrainBudget, total_steps: int):
        if self.params["schedule"] == "constant":
            return default_optimiser(net, budget, total_steps)
        return adamw_cosine(net, budget, total_steps, weight_decay=self.params["weight_decay"])
