"""U-Net reference separator: size and width knob, shapes for any K and downsample factor, the even-split
start, learning at a tiny budget, PIT and AdamW + cosine by default, parameter checks."""

from __future__ import annotations

import itertools

import pytest
import torch

from sepbench import ParameterError, Task, TrainBudget
from sepbench.methods.average import Average
from sepbench.methods.unet import UNetSeparator

TINY = {"width": 8, "blocks": 1}


def test_default_size_is_that_of_the_papers_models_and_width_scales_it(single_task) -> None:
    count = UNetSeparator(single_task).n_parameters()
    print(f"unet parameters: {count:,}")
    assert 1_500_000 <= count <= 3_000_000
    half = UNetSeparator(single_task, width=24).n_parameters()
    assert 0.2 * count < half < 0.3 * count  # about width²


@pytest.mark.parametrize(("weights", "factor"), [(((1.0, 1.0),), 2), (((0.7, 0.3), (0.3, 0.7)), 2),
                                                 (((1.0, 1.0),), 1), (((1.0, 1.0),), 4),
                                                 (((0.6, 0.4), (0.5, 0.5), (0.2, 0.8)), 3)])
def test_any_number_of_observations_and_any_downsample_factor(weights, factor) -> None:
    task = Task(weights, factor, 0.01)
    out = UNetSeparator(task, **TINY).separate(torch.rand(3, task.n_observations, *task.observation_shape))
    assert out.shape == (3, 2, 28, 28) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1


def test_untrained_network_is_the_average_baseline(dual_task) -> None:
    y = torch.rand(4, 2, 14, 14) * 0.9
    untrained = UNetSeparator(dual_task).separate(y)
    torch.testing.assert_close(untrained, Average(dual_task).separate(y), atol=1e-6, rtol=0)


def test_pit_adamw_and_cosine_by_default(single_task) -> None:
    method = UNetSeparator(single_task, **TINY)
    assert method.params["loss"] == "pit" and method.params["schedule"] == "cosine"
    optimiser, schedule = method.configure_optimiser(method.net, TrainBudget(), 10)
    assert isinstance(optimiser, torch.optim.AdamW) and schedule is not None
    optimiser, schedule = UNetSeparator(single_task, schedule="constant", **TINY).configure_optimiser(
        method.net, TrainBudget(), 10)
    assert isinstance(optimiser, torch.optim.Adam) and schedule is None


def test_tiny_training_lowers_the_loss(single_task, make_data, fit_context) -> None:
    torch.manual_seed(0)
    method = UNetSeparator(single_task, **TINY)
    method.fit(make_data(single_task, n_mixtures=256), fit_context(mixtures=256, epochs=4, batch_size=32,
                                                                   lr=3e-3))
    train = [record["train_loss"] for record in method.history_]
    val = [record["val_loss"] for record in method.history_]
    print("unet train losses:", train, "validation:", val)
    assert all(later < earlier for earlier, later in itertools.pairwise(train))
    assert train[-1] < 0.9 * train[0] and val[-1] < 0.95 * val[0]  # from the even split (loss ~0.03)
    assert not method.net.training


def test_parameters_are_validated(single_task) -> None:
    with pytest.raises(ParameterError, match="loss"):
        UNetSeparator(single_task, loss="bogus")
    with pytest.raises(ParameterError, match="'width' must be >= 2"):
        UNetSeparator(single_task, width=1)
    with pytest.raises(ParameterError, match="weight_decay"):
        UNetSeparator(single_task, weight_decay=-1.0)
    with pytest.raises(ParameterError, match="schedule"):
        UNetSeparator(single_task, schedule="step")
