"""Patchformer reference separator: size and width knob, tokens = patches of one image, shapes for any K and
downsample factor, the even-split start, learning at a tiny budget, PIT and AdamW + cosine, parameter checks."""

from __future__ import annotations

import itertools

import pytest
import torch

from sepbench import ParameterError, Task, TrainBudget
from sepbench.methods.average import Average
from sepbench.methods.patchformer import Patchformer

TINY = {"width": 32, "depth": 2, "heads": 4}


def test_default_size_is_that_of_the_papers_models_and_width_scales_it(single_task) -> None:
    count = Patchformer(single_task).n_parameters()
    print(f"patchformer parameters: {count:,}")
    assert 1_500_000 <= count <= 3_000_000
    half = Patchformer(single_task, width=96).n_parameters()
    assert 0.2 * count < half < 0.3 * count  # about 12 · width² per layer


def test_attention_runs_over_the_patches_of_one_image(single_task) -> None:
    method = Patchformer(single_task, patch=4, **TINY)
    shapes: list[torch.Size] = []
    method.net.encoder.register_forward_pre_hook(lambda module, args: shapes.append(args[0].shape))
    method.separate(torch.randn(7, 1, 14, 14))
    assert shapes == [torch.Size([7, 49, 32])]  # (batch, the 7×7 patches of 28×28, width)
    method = Patchformer(single_task, patch=3, **TINY)  # 28 is not a multiple of 3: padded to 30, 10×10 patches
    shapes.clear()
    method.net.encoder.register_forward_pre_hook(lambda module, args: shapes.append(args[0].shape))
    assert method.separate(torch.randn(2, 1, 14, 14)).shape == (2, 2, 28, 28)
    assert shapes == [torch.Size([2, 100, 32])]


@pytest.mark.parametrize(("weights", "factor"), [(((1.0, 1.0),), 2), (((0.7, 0.3), (0.3, 0.7)), 2),
                                                 (((1.0, 1.0),), 1), (((1.0, 1.0),), 4),
                                                 (((0.6, 0.4), (0.5, 0.5), (0.2, 0.8)), 3)])
def test_any_number_of_observations_and_any_downsample_factor(weights, factor) -> None:
    task = Task(weights, factor, 0.01)
    out = Patchformer(task, **TINY).separate(torch.rand(3, task.n_observations, *task.observation_shape))
    assert out.shape == (3, 2, 28, 28) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1


def test_untrained_network_is_the_average_baseline(dual_task) -> None:
    y = torch.rand(4, 2, 14, 14) * 0.9
    untrained = Patchformer(dual_task).separate(y)
    torch.testing.assert_close(untrained, Average(dual_task).separate(y), atol=1e-6, rtol=0)


def test_pit_adamw_and_cosine_by_default(single_task) -> None:
    method = Patchformer(single_task, **TINY)
    assert method.params["loss"] == "pit" and method.params["schedule"] == "cosine"
    optimiser, schedule = method.configure_optimiser(method.net, TrainBudget(), 10)
    assert isinstance(optimiser, torch.optim.AdamW) and schedule is not None
    optimiser, schedule = Patchformer(single_task, schedule="constant", **TINY).configure_optimiser(
        method.net, TrainBudget(), 10)
    assert isinstance(optimiser, torch.optim.Adam) and schedule is None


def test_tiny_training_lowers_the_loss(single_task, make_data, fit_context) -> None:
    torch.manual_seed(0)
    method = Patchformer(single_task, **TINY)
    method.fit(make_data(single_task, n_mixtures=256), fit_context(mixtures=256, epochs=6, batch_size=32,
                                                                   lr=3e-3))
    train = [record["train_loss"] for record in method.history_]
    val = [record["val_loss"] for record in method.history_]
    print("patchformer train losses:", train, "validation:", val)
    assert all(later < earlier for earlier, later in itertools.pairwise(train))
    assert train[-1] < 0.9 * train[0] and val[-1] < 0.95 * val[0]  # from the even split (loss ~0.03)
    assert not method.net.training


def test_parameters_are_validated(single_task) -> None:
    with pytest.raises(ParameterError, match="loss"):
        Patchformer(single_task, loss="bogus")
    with pytest.raises(ParameterError, match="heads=5 must divide width=192"):
        Patchformer(single_task, heads=5)
    with pytest.raises(ParameterError, match="dropout"):
        Patchformer(single_task, dropout=1.0)
    with pytest.raises(ParameterError, match="weight_decay"):
        Patchformer(single_task, weight_decay=-1.0)
    with pytest.raises(ParameterError, match="schedule"):
        Patchformer(single_task, schedule="step")
