"""The shared training pieces: fixed and permutation-invariant losses, and divergence detection."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from methods.training import TorchMethod, TrainingDiverged, evaluate, separation_loss, train_network


def _sources(n: int = 8, s: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ref = torch.rand(n, s, 28, 28, generator=gen)
    est = (ref + 0.05 * torch.randn(ref.shape, generator=gen)).clamp(0, 1)  # close to the right order
    return est, ref


def test_pit_equals_fixed_on_correctly_ordered_outputs() -> None:
    est, ref = _sources()
    assert separation_loss(est, ref, "pit") == separation_loss(est, ref, "fixed")


def test_pit_of_swapped_outputs_equals_fixed_of_unswapped_exactly() -> None:
    est, ref = _sources()
    swapped = est.flip(1)
    fixed = separation_loss(est, ref, "fixed")
    assert separation_loss(swapped, ref, "pit") == fixed
    assert separation_loss(swapped, ref, "fixed") > fixed


def test_pit_picks_the_order_per_mixture() -> None:
    est, ref = _sources(s=3)
    mixed = est.clone()
    mixed[::2] = est[::2][:, [2, 0, 1]]  # every other mixture has its outputs rotated
    assert torch.allclose(separation_loss(mixed, ref, "pit"), separation_loss(est, ref, "fixed"))
    assert separation_loss(mixed, ref, "fixed") > separation_loss(est, ref, "fixed")


def test_unknown_loss_mode_is_refused() -> None:
    est, ref = _sources()
    with pytest.raises(ValueError, match="bogus"):
        separation_loss(est, ref, "bogus")


class _NaNNet(nn.Module):
    """Outputs NaN for every pixel while keeping a gradient path to one weight."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return torch.full((len(y), 2, 28, 28), float("nan")) * self.weight


class _NaNMethod(TorchMethod):
    """A learned method whose network diverges at once (not registered)."""

    def build_network(self) -> nn.Module:
        return _NaNNet()


def test_nan_loss_raises_training_diverged_with_a_clear_message(single_task, make_data, fit_context) -> None:
    method = _NaNMethod(single_task)
    with pytest.raises(TrainingDiverged, match=r"training loss became nan in epoch 1 by step 2: try a smaller lr"):
        method.fit(make_data(single_task, n_mixtures=32), fit_context(mixtures=32, epochs=1, batch_size=16))


def test_best_validation_weights_are_kept(single_task, make_data, fit_context) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(196, 2 * 784), nn.Sigmoid(), nn.Unflatten(1, (2, 28, 28)))
    data = make_data(single_task, n_mixtures=64)

    def loss_fn(module: nn.Module, batch) -> torch.Tensor:
        return separation_loss(module(batch.y), batch.x)

    history = train_network(net, data, fit_context(mixtures=64, epochs=3, batch_size=32), loss_fn)
    assert [record["epoch"] for record in history] == [1, 2, 3]
    assert not net.training
    assert evaluate(net, data.validation, loss_fn) == pytest.approx(min(r["val_loss"] for r in history))
