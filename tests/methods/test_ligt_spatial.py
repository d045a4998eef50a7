"""ligt-spatial (the earlier LiGT-like network): size, shapes, attention within one image, learning, checks."""

from __future__ import annotations

import itertools

import pytest
import torch

from sepbench.errors import ParameterError
from sepbench.methods.ligt_spatial import LiGTSpatial as LiGT

PAPER_COUNT = 2_301_865
TINY = {"channels": 8, "width": 32, "heads": 4, "ff": 64}


def test_parameter_count_is_near_the_papers(single_task) -> None:
    count = LiGT(single_task).n_parameters()
    print(f"ligt-spatial parameters: {count:,} (paper {PAPER_COUNT:,}, {count / PAPER_COUNT - 1:+.3%})")
    assert abs(count - PAPER_COUNT) <= 0.05 * PAPER_COUNT


@pytest.mark.parametrize("scenario", ["single_task", "dual_task"])
def test_outputs_are_two_images_in_unit_range(scenario: str, request) -> None:
    task = request.getfixturevalue(scenario)
    out = LiGT(task).separate(torch.randn(5, task.n_observations, 14, 14))
    assert out.shape == (5, 2, 28, 28)
    assert out.min() >= 0 and out.max() <= 1


def test_attention_runs_over_the_36_positions_of_one_image(single_task) -> None:
    method = LiGT(single_task)
    shapes: list[torch.Size] = []
    method.net.transformer.register_forward_pre_hook(lambda module, args: shapes.append(args[0].shape))
    method.separate(torch.randn(7, 1, 14, 14))
    assert shapes == [torch.Size([7, 36, 288])]  # (batch, tokens of one image, width): batch is not a sequence


@pytest.mark.parametrize("prior", [True, False])
def test_tiny_training_lowers_the_loss(prior: bool, single_task, make_data, fit_context) -> None:
    torch.manual_seed(0)
    method = LiGT(single_task, dropout=0.0, prior=prior, **TINY)
    method.fit(make_data(single_task, n_mixtures=256), fit_context(mixtures=256, epochs=4, batch_size=32))
    losses = [record["train_loss"] for record in method.history_]
    print(f"ligt (prior={prior}) train losses:", losses)
    assert len(losses) == 4
    assert all(later < earlier for earlier, later in itertools.pairwise(losses))
    # the prior starts near the even split (loss ~0.036 here), the bare sigmoid far above it
    assert losses[-1] < (0.95 if prior else 0.9) * losses[0]
    assert not method.net.training


def test_parameters_are_validated(single_task) -> None:
    assert LiGT(single_task, loss="pit", **TINY).params["loss"] == "pit"
    with pytest.raises(ParameterError, match="loss"):
        LiGT(single_task, loss="bogus")
    with pytest.raises(ParameterError, match="unknown parameter 'hidden'"):
        LiGT(single_task, hidden=3)
    with pytest.raises(ParameterError, match="heads"):
        LiGT(single_task, heads=7)
    with pytest.raises(ParameterError, match="dropout"):
        LiGT(single_task, dropout=1.5)


def test_pit_loss_trains(single_task, make_data, fit_context) -> None:
    method = LiGT(single_task, loss="pit", **TINY)
    method.fit(make_data(single_task, n_mixtures=32), fit_context(mixtures=32, epochs=1, batch_size=16))
    assert len(method.history_) == 1 and method.history_[0]["train_loss"] > 0


@pytest.mark.parametrize("scenario", ["single_task", "dual_task"])
def test_even_split_prior_makes_a_zero_head_output_the_even_split(scenario: str, request) -> None:
    task = request.getfixturevalue(scenario)
    method = LiGT(task, **TINY)
    head = method.net.expander[-1]
    assert isinstance(head, torch.nn.Conv2d)  # no Sigmoid: the prior is added to the logits first
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    y = torch.rand(3, task.n_observations, 14, 14) * 0.9
    out = method.separate(y)
    even = y.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3).sum(1, keepdim=True) / task.weight_matrix().sum()
    expected = even.clamp(1e-3, 1 - 1e-3).expand(-1, 2, -1, -1)
    assert torch.allclose(out, expected, atol=1e-5)
    assert not torch.allclose(out[:, :, ::2, ::2], out[:, :, ::2, ::2].mean())  # follows y, not a constant


def test_prior_off_is_the_papers_bare_sigmoid_with_the_same_parameters(single_task) -> None:
    bare = LiGT(single_task, prior=False)
    assert isinstance(bare.net.expander[-1], torch.nn.Sigmoid)
    assert bare.net.total_weight is None
    assert bare.n_parameters() == LiGT(single_task).n_parameters()
    with pytest.raises(ParameterError, match="'prior' must be bool"):
        LiGT(single_task, prior="yes")
