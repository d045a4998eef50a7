"""convsep-res (the earlier ConvSep-like network): size, shapes, the residual ẑ
(shared shapes: test_learned_common.py)."""

from __future__ import annotations

import pytest
import torch

from sepbench.methods.convsep_res import ConvSepRes as ConvSep


@pytest.mark.parametrize("scenario", ["single_task", "dual_task"])
def test_reconstruction_is_one_full_size_image_per_observation(scenario: str, request) -> None:
    task = request.getfixturevalue(scenario)
    y = torch.randn(5, task.n_observations, 14, 14)
    assert ConvSep(task).net.reconstruct(y).shape == (5, task.n_observations, 28, 28)


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
