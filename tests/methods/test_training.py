"""The shared training pieces: fixed and permutation-invariant losses, and divergence detection."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from sepbench import TorchMethod, TrainBudget
from sepbench.methods.dropout import FastDropout, fast_dropout, use_fast_dropout
from sepbench.methods.losses import separation_loss
from sepbench.methods.training import TrainingDiverged, adamw_cosine, evaluate, train_network


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


def test_fast_dropout_drops_p_of_the_elements_and_keeps_the_mean() -> None:
    torch.manual_seed(0)
    x = torch.rand(1_000_000) + 0.5
    for p in (0.1, 0.5):
        out = fast_dropout(x, p)
        kept = out != 0
        keep_prob = 1 - round(p * 65536) / 65536
        assert float(1 - kept.float().mean()) == pytest.approx(p, abs=3e-3)  # ~6σ of a binomial at 1e6 draws
        torch.testing.assert_close(out[kept], x[kept] / keep_prob, rtol=1e-6, atol=0)  # survivors scaled
        assert float(out.mean() / x.mean()) == pytest.approx(1.0, abs=3e-3)  # unbiased
    assert fast_dropout(x, 0.0) is x
    assert torch.equal(fast_dropout(x, 1.0), torch.zeros_like(x))


def test_fast_dropout_is_seeded_and_its_gradient_is_the_mask() -> None:
    x = torch.randn(37, 53, dtype=torch.bfloat16, requires_grad=True)  # odd size: not a multiple of 4 lanes
    torch.manual_seed(3)
    first = fast_dropout(x, 0.25)
    torch.manual_seed(3)
    second = fast_dropout(x, 0.25)
    assert torch.equal(first, second) and first.dtype == torch.bfloat16
    first.sum().backward()
    expected = (first != 0).to(torch.bfloat16) * (65536 / (65536 - 16384))
    assert torch.equal(x.grad, expected)


def test_use_fast_dropout_swaps_plain_dropout_modules_only() -> None:
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.2, batch_first=True)
    keys = set(layer.state_dict())
    assert use_fast_dropout(layer) == 3  # dropout (feed-forward), dropout1, dropout2
    assert all(type(m) is not nn.Dropout for m in layer.modules())
    assert layer.dropout.p == 0.2 and isinstance(layer.dropout, FastDropout)
    assert set(layer.state_dict()) == keys
    layer.eval()
    x = torch.randn(4, 5, 16)
    assert torch.equal(layer.dropout(x), x)  # identity outside training


def test_fit_on_cpu_trains_with_fast_dropout(single_task, make_data, fit_context) -> None:
    from sepbench.methods.ligt_spatial import LiGTSpatial

    method = LiGTSpatial(single_task, channels=8, width=16, heads=2, ff=32)
    method.fit(make_data(single_task, n_mixtures=32), fit_context(mixtures=32, epochs=1, batch_size=16))
    kinds = [type(m) for m in method.net.modules()]
    assert FastDropout in kinds and nn.Dropout not in kinds


def test_adamw_cosine_warms_up_peaks_at_the_budgets_lr_and_decays_to_zero() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4))
    budget = TrainBudget(lr=2e-3)
    optimiser, schedule = adamw_cosine(net, budget, total_steps=100, weight_decay=0.05, warmup=0.1)
    assert isinstance(optimiser, torch.optim.AdamW)
    decay = {id(p): g["weight_decay"] for g in optimiser.param_groups for p in g["params"]}
    assert decay[id(net[0].weight)] == 0.05 and decay[id(net[0].bias)] == 0.0 and decay[id(net[1].weight)] == 0.0
    rates = []
    for _ in range(100):
        rates.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        schedule.step()
    assert rates[0] == pytest.approx(2e-3 / 10)                        # first warm-up step
    assert max(rates) == pytest.approx(2e-3) and rates.index(max(rates)) == 9
    assert rates[54] == pytest.approx(1e-3, rel=0.05)                   # half-way down the cosine
    assert rates[-1] < 2e-3 * 1e-3
    assert all(b <= a for a, b in itertools.pairwise(rates[9:]))


class _ScheduledMethod(TorchMethod):
    """A linear network that chooses AdamW with a cosine schedule (not registered)."""

    def build_network(self) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(196, 2 * 784), nn.Sigmoid(), nn.Unflatten(1, (2, 28, 28)))

    def configure_optimiser(self, net, budget, total_steps):
        self.seen = total_steps
        self.optimiser, schedule = adamw_cosine(net, budget, total_steps)
        return self.optimiser, schedule


def test_fit_uses_the_methods_optimiser_and_schedule_and_records_elapsed_seconds(single_task, make_data,
                                                                                 fit_context) -> None:
    method = _ScheduledMethod(single_task)
    method.fit(make_data(single_task, n_mixtures=64), fit_context(mixtures=64, epochs=3, batch_size=16))
    assert method.seen == 3 * 4                                         # epochs × steps per epoch
    assert method.optimiser.param_groups[0]["lr"] < 1e-3 * 1e-2          # the cosine reached its end
    history = method.history_
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert all(r["seconds"] > 0 for r in history)
    assert [r["elapsed"] for r in history] == pytest.approx(list(itertools.accumulate(r["seconds"] for r in history)))
