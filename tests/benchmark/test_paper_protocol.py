"""The paper's scoring protocol: its SSIM, its 157 images, its matching, its train-mode forward pass."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage
from torch import nn

from sepbench import Task, TorchMethod
from sepbench.metrics import score
from sepbench.paper_protocol import gaussian_ssim, paper_protocol, scored_mixtures, train_mode_outputs
from sepbench.registry import get_method


def _reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM with an 11×11 Gaussian window (σ 1.5, truncated at 5 pixels) and zero padding, via scipy."""
    def blur(t):
        return ndimage.gaussian_filter(t, 1.5, mode="constant", cval=0.0, truncate=5 / 1.5)
    mu_a, mu_b = blur(a), blur(b)
    va, vb, cov = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return float((((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))).mean())


def test_gaussian_ssim_matches_an_independent_implementation() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(4, 28, 28, generator=gen), torch.rand(4, 28, 28, generator=gen)
    b[0] = a[0]
    got = gaussian_ssim(a, b)
    assert float(got[0]) == pytest.approx(1.0, abs=1e-6)
    for i in range(4):
        assert float(got[i]) == pytest.approx(_reference_ssim(a[i].double().numpy(), b[i].double().numpy()), abs=1e-5)


def test_the_paper_scores_157_images_of_10000() -> None:
    picked = scored_mixtures(10000)
    assert len(picked) == 157 and picked[:3].tolist() == [0, 64, 128] and int(picked[-1]) == 9984


class _BatchNormMethod(TorchMethod):
    """A small learned method: BatchNorm, then a sigmoid, two outputs."""

    def build_network(self) -> nn.Module:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2),
                            nn.Sigmoid()).eval()
        net[2].running_mean.fill_(0.3)
        return net


def test_train_mode_uses_batch_statistics_on_a_copy() -> None:
    method = _BatchNormMethod(Task(((1.0, 1.0),), 2, 0.01))
    before = {k: v.clone() for k, v in method.net.state_dict().items()}
    y = torch.rand(130, 1, 14, 14)
    trained = train_mode_outputs(method, y)
    with torch.no_grad():
        evaluated = method.net(y)
    assert trained.shape == evaluated.shape and not torch.allclose(trained, evaluated, atol=1e-3)
    # batch 64 by batch 64: the first output depends on its own 64 only
    torch.testing.assert_close(train_mode_outputs(method, y[:64])[0], trained[0])
    assert not method.net.training
    for key, value in method.net.state_dict().items():
        assert torch.equal(value, before[key]), key  # running statistics untouched
    assert train_mode_outputs(get_method("average")(Task(((1.0, 1.0),), 2, 0.01)), y) is None  # no network


def test_one_output_is_matched_to_the_source_of_higher_ssim() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(128, 2, 28, 28, generator=gen)
    est = torch.stack([x[:, 0], x[:, 1]], dim=1)
    est[0, 1] = x[0, 0]  # mixture 0: output 2 is source 1 exactly
    est[64, 1] = x[64, 1] * 0.5  # mixture 64: output 2 is close to source 2
    rows = score(est, x)
    result = paper_protocol(object(), torch.zeros(128, 1, 14, 14), x, est, rows)
    images = result["images"]
    assert images["mixture"] == [0, 64]
    assert images["ssim"][0] == pytest.approx(1.0, abs=1e-6) and images["mse"][0] == pytest.approx(0.0, abs=1e-9)
    expected_mse = float(((x[64, 1] * 0.5 - x[64, 1]) ** 2).mean())
    assert images["mse"][1] == pytest.approx(expected_mse, rel=1e-5)
    steps = result["steps"]
    assert steps["E"]["mse"] == pytest.approx(float(rows["mse"].mean())) and steps["A"] == steps["B"]
    assert steps["C"]["n"] == 128 and steps["D"]["n"] == 256 and steps["A"]["n"] == 2
    assert isinstance(rows, pd.DataFrame)
