"""Every registered method: one mixture separated alone equals the same mixture separated inside a batch.

Methods that declare ``batch_dependent = True`` (reproductions of flawed public code) must show the flaw.
"""

from __future__ import annotations

import pytest
import torch

from sepbench import TorchMethod
from sepbench.api import Task
from sepbench.registry import available_methods

SINGLE = Task(((1.0, 1.0),), 2, 0.01)
DUAL = Task(((0.7, 0.3), (0.3, 0.7)), 2, 0.01)


def _cases() -> list:
    """(method, scenario) pairs: the single scenario, and the dual one for methods needing ≥ 2 observations."""
    cases = []
    for name, cls in available_methods().items():
        if cls.unsupported_reason(SINGLE) is None:
            cases.append(pytest.param(name, SINGLE, id=f"{name}-single"))
        if cls.requires.min_observations >= 2:
            cases.append(pytest.param(name, DUAL, id=f"{name}-dual"))
    return cases


@pytest.mark.parametrize(("name", "task"), _cases())
def test_output_does_not_depend_on_batch_mates(name: str, task: Task, make_data, fit_context) -> None:
    cls = available_methods()[name]
    assert cls.unsupported_reason(task) is None
    torch.manual_seed(0)
    data = make_data(task, n_mixtures=64)
    method = cls(task)
    method.fit(data, fit_context(mixtures=64, epochs=1, batch_size=32))

    gen = torch.Generator().manual_seed(1)
    batch = data.validation.y[torch.randperm(len(data.validation.y), generator=gen)[:16]]
    position = 5
    alone = method.separate(batch[position:position + 1])
    together = method.separate(batch)[position:position + 1]
    assert alone.shape == (1, task.n_sources, *task.source_shape)
    difference = float((alone - together).abs().max())
    if cls.batch_dependent:
        # declared flaw: outputs mix information across the batch, so they must differ
        assert difference > 1e-5, f"{name} declares batch_dependent but gave the same output ({difference:.2e})"
    else:
        assert difference <= 1e-5, f"{name}: output changed by {difference:.2e} when batch-mates were added"


@pytest.mark.parametrize("name", [n for n, c in available_methods().items()
                                  if issubclass(c, TorchMethod) and not c.batch_dependent
                                  and c.unsupported_reason(SINGLE) is None])
def test_chunked_separation_equals_one_pass(name: str, make_data, fit_context) -> None:
    """``separate`` runs in chunks sized for the cache (64 on a CPU for most methods); chunks change nothing."""
    cls = available_methods()[name]
    torch.manual_seed(0)
    data = make_data(SINGLE, n_mixtures=64)
    method = cls(SINGLE)
    method.fit(data, fit_context(mixtures=64, epochs=1, batch_size=32))
    assert method.inference_chunk("cpu") == cls.cpu_chunk and method.inference_chunk("cuda") == cls.GPU_CHUNK
    y = torch.rand(150, *data.validation.y.shape[1:], generator=torch.Generator().manual_seed(2)) * 2
    one_pass = method.separate(y, chunk=len(y))
    for chunk in (None, 7):
        chunked = method.separate(y, chunk=chunk)
        assert chunked.shape == one_pass.shape
        assert float((chunked - one_pass).abs().max()) <= 1e-5
