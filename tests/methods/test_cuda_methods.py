"""On CUDA under bf16 every learned method still separates each mixture independently of its batch-mates.

Skipped without CUDA; ``scripts/gpu-check.sh`` runs it on a GPU (``pytest -m cuda``).
"""

from __future__ import annotations

import pytest
import torch

from sepbench.api import FitContext, TrainBudget
from sepbench.datasets.mixtures import TrainingData
from sepbench.methods.torch_method import TorchMethod
from sepbench.registry import available_methods
from tests.methods.conftest import SINGLE

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]

LEARNED = [name for name, cls in available_methods().items()
           if issubclass(cls, TorchMethod) and cls.supports_bf16 and not getattr(cls, "batch_dependent", False)
           and cls.unsupported_reason(SINGLE) is None]


@pytest.mark.parametrize("name", LEARNED)
def test_bf16_separation_on_cuda_does_not_depend_on_batch_mates(name: str, digits: torch.Tensor) -> None:
    device = torch.device("cuda", 0)
    cls = available_methods()[name]
    torch.manual_seed(0)
    data = TrainingData(digits.to(device), SINGLE, 64, seed=0)  # generated on the GPU, as a cell does
    method = cls(SINGLE)
    budget = TrainBudget(mixtures=64, epochs=1, batch_size=32, precision="bf16")
    method.fit(data, FitContext(device=device, seed=0, budget=budget))
    assert method.precision_ == "bf16"
    gen = torch.Generator().manual_seed(1)
    batch = data.validation.y[torch.randperm(len(data.validation.y), generator=gen)[:16].to(device)]
    alone = method.separate(batch[5:6])
    together = method.separate(batch)[5:6]
    assert alone.device.type == "cuda" and alone.shape == (1, 2, 28, 28)
    difference = float((alone - together).abs().max())
    assert difference <= 1e-5, f"{name}: output changed by {difference:.2e} when batch-mates were added (CUDA bf16)"
