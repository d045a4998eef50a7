"""The built-ins that serve S = 2–4 build S output maps from the task and train with PIT over S sources."""

from __future__ import annotations

import pytest
import torch

from sepbench import Task
from sepbench.methods.losses import pairwise_huber
from sepbench.registry import get_method
from tests.methods.conftest import context

SMALL = {"unet": {"width": 8, "blocks": 1}, "patchformer": {"width": 32, "depth": 1, "heads": 2},
         "fcsae": {"hidden": 32, "depth": 1, "loss": "pit"}, "average": {}}


@pytest.mark.parametrize("s", [3, 4])
@pytest.mark.parametrize("name", ["average", "fcsae", "unet", "patchformer"])
def test_s_sources_out_and_pit_training(name, s, make_data, monkeypatch) -> None:
    task = Task(((1.0,) * s, tuple(0.2 + 0.2 * j for j in range(s))), 2, 0.01, noise_model="poisson-gaussian",
                photons=200.0)
    cls = get_method(name)
    assert cls.unsupported_reason(task) is None
    method = cls(task, **SMALL[name])
    y = torch.rand(5, 2, 14, 14)
    assert method.separate(y).shape == (5, s, 28, 28)
    if not cls.requires.needs_training:
        return
    # the loss the loop trains on is the minimum over all S! orders (spy on the PIT search it calls)
    from sepbench import pit

    seen = []
    search = pit.min_permutation_cost
    monkeypatch.setattr(pit, "min_permutation_cost", lambda cost: seen.append(cost.shape) or search(cost))
    method.fit(make_data(task, n_mixtures=32, n_validation=16), context(mixtures=32, batch_size=16))
    assert seen and all(shape[1:] == (s, s) for shape in seen)
    assert method.history_ and all(torch.isfinite(torch.tensor(r["train_loss"])) for r in method.history_)
    out = method.separate(y)
    assert out.shape == (5, s, 28, 28) and torch.isfinite(out).all()
    # PIT: relabelling the targets does not change the loss
    est, ref = out[:4], torch.rand(4, s, 28, 28)
    cost = pairwise_huber(est, ref)
    torch.testing.assert_close(search(cost), search(pairwise_huber(est, ref.flip(1))))
