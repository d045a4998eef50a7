"""Every built-in method separates every task it accepts: a method that does not refuse a task in
``unsupported_reason`` (so the planner gives it cells) must not fail on that task's shapes in the cell."""

from __future__ import annotations

import pytest
import torch

from sepbench import Task
from sepbench.registry import available_methods

TASKS = [Task(((1.0, 1.0),), f, 0.01) for f in (1, 2, 4)] + [Task(((0.7, 0.3), (0.3, 0.7)), f, 0.01) for f in (1, 2)]
SMALL = {"unet": {"width": 8}, "patchformer": {"width": 32, "depth": 1, "heads": 2}}
ACCEPTED = [(name, task) for name, cls in sorted(available_methods().items()) for task in TASKS
            if cls.unsupported_reason(task) is None]


def test_every_method_accepts_the_papers_setting_and_the_reference_ones_every_size() -> None:
    names = {name for name, _ in ACCEPTED}
    assert names == set(available_methods())  # K = 2 at downsample 2 (ica) or K = 1 at downsample 2 (the rest)
    for name in ("unet", "patchformer", "average", "fcsae"):
        assert sum(n == name for n, _ in ACCEPTED) == len(TASKS), name


@pytest.mark.parametrize(("name", "task"), ACCEPTED,
                         ids=[f"{n}-K{t.n_observations}-x{t.downsample}" for n, t in ACCEPTED])
def test_a_method_separates_every_task_it_accepts(name, task) -> None:
    method = available_methods()[name](task, **SMALL.get(name, {}))
    y = torch.rand(3, task.n_observations, *task.observation_shape)
    out = method.separate(y)
    assert out.shape == (3, task.n_sources, *task.source_shape)
