"""convsep-res (the earlier ConvSep-like network): size, shapes, the true-z / ẑ switch, learning, checks."""

from __future__ import annotations

import itertools

import pytest
import torch

from sepbench.errors import ParameterError
from sepbench.methods.convsep_res import ConvSepRes as ConvSep

PAPER_COUNT = 2_846_224
TINY = {"width": 8, "blocks": 1, "sep_width": 8, "sep_depth": 1}


def test_parameter_count_matches_paper(single_task) -> None:
    count = ConvSep(single_task).n_parameters()
    print(f"convsep parameters: {count:,} (paper {PAPER_COUNT:,}, {count / PAPER_COUNT - 1:+.3%})")
    assert abs(count - PAPER_COUNT) <= 0.02 * PAPER_COUNT


@pytest.mark.parametrize("scenario", ["single_task", "dual_task"])
def test_outputs_are_two_images_in_unit_range(scenario: str, request) -> None:
    task = request.getfixturevalue(scenario)
    method = ConvSep(task)
    y = torch.randn(5, task.n_observations, 14, 14)
    out = method.separate(y)
    assert out.shape == (5, 2, 28, 28)
    assert out.min() >= 0 and out.max() <= 1
    assert method.net.reconstruct(y).shape == (5, task.n_observations, 28, 28)


def test_separators_get_true_z_in_training_and_z_hat_at_test(single_task, make_data) -> None:
    method = ConvSep(single_task, **TINY)
    net = method.net
    seen: list[torch.Tensor] = []
    for separator in net.separators:
        separator.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    batch = next(make_data(single_task, n_mixtures=8).epoch(8))

    net.train()
    method.training_loss(net, batch)
    assert len(seen) == 2 and all(s is batch.z for s in seen)  # Fig. 2b: the clean superposition

    seen.clear()
    out = method.separate(batch.y)
    with torch.no_grad():
        z_hat = net.reconstruct(batch.y)
    assert len(seen) == 2
    for s in seen:  # Fig. 2c: the decoder's reconstruction, never the true z
        torch.testing.assert_close(s, z_hat)
        assert not torch.allclose(s, batch.z)
    torch.testing.assert_close(out, net.split(z_hat).detach())

    seen.clear()
    net.eval()
    method.training_loss(net, batch)  # validation measures the test-time path
    assert all(s is not batch.z for s in seen)


def test_tiny_training_lowers_the_loss(single_task, make_data, fit_context) -> None:
    torch.manual_seed(0)
    method = ConvSep(single_task, **TINY)
    method.fit(make_data(single_task, n_mixtures=256), fit_context(mixtures=256, epochs=4, batch_size=32))
    losses = [record["train_loss"] for record in method.history_]
    print("convsep train losses:", losses)
    assert len(losses) == 4
    assert all(later < earlier for earlier, later in itertools.pairwise(losses))
    # the residual ẑ and the even-split prior start near the classical estimates (loss ~0.039 here)
    assert losses[-1] < 0.95 * losses[0]
    assert not method.net.training


def test_parameters_are_validated(single_task) -> None:
    assert ConvSep(single_task, loss="pit", **TINY).params["loss"] == "pit"
    with pytest.raises(ParameterError, match="loss"):
        ConvSep(single_task, loss="bogus")
    with pytest.raises(ParameterError, match="unknown parameter 'depth'"):
        ConvSep(single_task, depth=3)
    with pytest.raises(ParameterError, match="width"):
        ConvSep(single_task, width=1)


def test_pit_loss_trains(single_task, make_data, fit_context) -> None:
    method = ConvSep(single_task, loss="pit", **TINY)
    method.fit(make_data(single_task, n_mixtures=32), fit_context(mixtures=32, epochs=1, batch_size=16))
    assert len(method.history_) == 1 and method.history_[0]["train_loss"] > 0


@pytest.mark.parametrize("scenario", ["single_task", "dual_task"])
def test_reconstruction_is_a_correction_to_the_upsampled_observation(scenario: str, request) -> None:
    task = request.getfixturevalue(scenario)
    net = ConvSep(task).net.eval()
    last = net.decoder.head[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    y = torch.rand(3, task.n_observations, 14, 14)
    with torch.no_grad():
        z_hat = net.reconstruct(y)
    assert z_hat.shape == (3, task.n_observations, 28, 28)
    # a zero correction leaves the bilinear upsampling of y: mean-preserving, smooth, equal to y's average
    assert torch.allclose(torch.nn.functional.avg_pool2d(z_hat, 2).mean(), y.mean(), atol=1e-6)
    expected = torch.nn.functional.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(z_hat, expected, atol=1e-6)
    assert not torch.allclose(z_hat[:, :, 0], z_hat[:, :, 1])  # not a constant: it follows y
