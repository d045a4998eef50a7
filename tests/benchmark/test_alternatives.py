"""perf/alternatives.py: k seeds trained as one vmap-ed model really are k networks that learn; what vmap cannot
trace is reported as a finding, not a failure."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sepbench.api import _REGISTRY
from sepbench.datasets.mnist import load_mnist
from sepbench.methods.torch_method import TorchMethod
from sepbench.perf.alternatives import alternatives, stacked_step
from sepbench.perf.common import endless_batches


def test_k_seeds_as_one_model_are_k_distinct_networks_that_learn():
    torch.manual_seed(0)
    images = load_mnist().train[:512]
    step = stacked_step("fcsae", 3, torch.device("cpu"), "fp32")
    batches = [next(endless_batches(images, 8, seed=1000 * s)) for s in range(3)]
    first = step(batches)
    assert first.shape == (3,) and len({round(v, 6) for v in first.tolist()}) == 3  # own init, own data
    for _ in range(30):
        last = step(batches)
    assert torch.all(last < 0.8 * first), (first, last)  # each network fits its own batch


class _DataDependent(nn.Module):
    """A network whose forward branches on a value (``.item()``): vmap cannot trace it, plain torch can."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(14 * 14, 2 * 28 * 28)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        h = self.lin(y.flatten(1))
        if h.abs().max().item() > 1e6:
            h = h / 2
        return torch.sigmoid(h).view(-1, 2, 28, 28)


class DataDependent(TorchMethod):
    name = "data-dependent"

    def build_network(self) -> nn.Module:
        return _DataDependent()


@pytest.fixture
def data_dependent(monkeypatch):
    monkeypatch.setitem(_REGISTRY, DataDependent.name, DataDependent)
    return DataDependent.name


def test_a_network_vmap_cannot_trace_is_a_row_that_says_so(data_dependent):
    images = load_mnist().train[:512]
    found = alternatives([data_dependent], images, torch.device("cpu"), 2, (1, 2), 0.05, "aot_eager", None,
                         {data_dependent: 100.0}, lambda: 100.0, 1.0, echo=lambda text: None)
    rows = {(r["candidate"], r["seeds"]): r for r in found["rows"]}
    # k = 2 is not tried once k = 1 failed; the compiled loss is still measured (dynamo splits at .item())
    assert set(rows) == {("seeds as one model", 1), ("torch.compile", 1)}
    assert rows["seeds as one model", 1]["note"].startswith("not possible: RuntimeError")
    assert "item" in rows["seeds as one model", 1]["note"]
    assert rows["seeds as one model", 1]["total_mixtures_per_s"] is None
    compiled = rows["torch.compile", 1]
    assert compiled["total_mixtures_per_s"] > 0 and compiled["compile_s"] > 0
    assert compiled["vs_plain_step"] == pytest.approx(compiled["total_mixtures_per_s"] / 100.0)


def test_methods_are_skipped_when_the_time_budget_is_spent():
    found = alternatives(["fcsae", "convsep"], load_mnist().train[:64], torch.device("cpu"), 2, (1,), 0.05,
                         "aot_eager", None, {}, lambda: 3.0, 5.0, echo=lambda text: None)
    assert found == {"rows": [], "skipped_for_time": ["fcsae", "convsep"]}
