"""``lsq``: the least-squares inverse of the known forward model, exact where it can be, the even split where the
data say no more, and a regularised deconvolution under a known blur."""

from __future__ import annotations

import torch

from sepbench import Task
from sepbench.datasets.forward import convolve, forward_options, gaussian_kernel, observe
from sepbench.methods.average import Average
from sepbench.methods.lsq import PRIOR_VARIANCE, LeastSquares
from tests.methods.conftest import stroke_images


def _sources(n: int, s: int, seed: int = 0) -> torch.Tensor:
    return stroke_images(n * s, seed=seed).reshape(n, s, 28, 28)


def _observe(x: torch.Tensor, task: Task, seed: int = 0) -> torch.Tensor:
    return observe(x, task.weight_matrix(), task.downsample, task.sigma, torch.Generator().manual_seed(seed),
                   **forward_options(task))[0]


def test_exact_when_k_equals_s_w_invertible_no_pooling_no_noise() -> None:
    for weights in (((0.7, 0.3), (0.3, 0.7)), ((1.0, 0.2, 0.1), (0.3, 0.9, 0.2), (0.1, 0.4, 0.8))):
        task = Task(weights, 1, 0.0)
        x = _sources(6, len(weights))
        estimate = LeastSquares(task).separate(_observe(x, task))
        torch.testing.assert_close(estimate, x, atol=1e-5, rtol=0)  # in order: W is known, nothing is permuted


def test_k_below_s_is_the_even_split() -> None:
    one = Task(((1.0, 1.0, 1.0),), 2, 0.05)
    y = _observe(_sources(5, 3), one)
    torch.testing.assert_close(LeastSquares(one).separate(y), Average(one).separate(y))  # one detector: exactly
    two = Task(((1.0, 1.0, 1.0), (0.5, 0.5, 0.5)), 1, 0.0)  # rank 1: the two detectors see the same thing
    x = _sources(5, 3, seed=1)
    estimate = LeastSquares(two).separate(_observe(x, two))
    even = x.sum(1, keepdim=True) / 3
    torch.testing.assert_close(estimate, even.expand_as(estimate), atol=1e-5, rtol=0)


def test_noise_sets_the_regularisation_and_beats_the_plain_inverse() -> None:
    task = Task(((0.7, 0.3), (0.3, 0.7)), 1, 0.2)
    x = _sources(40, 2, seed=2)
    y = _observe(x, task)
    plain = torch.linalg.solve(task.weight_matrix(), y.permute(0, 2, 3, 1).unsqueeze(-1)).squeeze(-1)
    plain = plain.permute(0, 3, 1, 2)
    regularised = LeastSquares(task).separate(y)
    assert ((regularised - x).square().mean() < 0.8 * (plain - x).square().mean())
    # λ = σ²·12: the closed form equals solving (WᵀW + λI) u = Wᵀy + λ u₀ directly
    lam = 0.2**2 / PRIOR_VARIANCE
    w = task.weight_matrix().double()
    even = (y.sum(1, keepdim=True) / w.sum()).double().expand(-1, 2, -1, -1)
    rhs = torch.einsum("ks,nkhw->nshw", w, y.double()) + lam * even
    direct = torch.linalg.solve(w.T @ w + lam * torch.eye(2, dtype=torch.float64),
                                rhs.permute(0, 2, 3, 1).unsqueeze(-1)).squeeze(-1).permute(0, 3, 1, 2)
    torch.testing.assert_close(regularised.double(), direct, atol=1e-5, rtol=0)


def test_poisson_noise_regularises_more_for_brighter_mixtures() -> None:
    quiet = Task(((0.7, 0.3), (0.3, 0.7)), 1, 0.0)
    shot = Task(((0.7, 0.3), (0.3, 0.7)), 1, 0.0, noise_model="poisson-gaussian", photons=10.0)
    y = _observe(_sources(4, 2), quiet)
    # without noise lsq is the exact inverse; with shot noise the estimate moves toward the even split
    even = (y.sum(1, keepdim=True) / 2).expand(-1, 2, -1, -1)
    exact, shrunk = LeastSquares(quiet).separate(y), LeastSquares(shot).separate(y)
    assert (shrunk - even).abs().sum() < 0.9 * (exact - even).abs().sum()


def test_known_gaussian_blur_is_undone_by_the_regularised_inverse() -> None:
    task = Task(((0.7, 0.3), (0.3, 0.7)), 2, 0.01, blur="gaussian", blur_width=1.0)
    x = _sources(20, 2, seed=3)
    y = _observe(x, task)
    method = LeastSquares(task, iterations=60)
    estimate = method.separate(y)
    # knowing the blur (CG on the normal equations) beats the same inverse that ignores it
    blurred_task = Task(task.weights, 2, 0.01)
    unaware = LeastSquares(blurred_task).separate(y)  # the same inverse, ignoring the blur
    assert (estimate - x).square().mean() < 0.8 * (unaware - x).square().mean()
    assert (convolve(estimate, gaussian_kernel(1.0)) - convolve(x, gaussian_kernel(1.0))).square().mean() < \
        (convolve(unaware, gaussian_kernel(1.0)) - convolve(x, gaussian_kernel(1.0))).square().mean()


def test_separation_is_batch_independent() -> None:
    task = Task(((0.7, 0.3), (0.3, 0.7)), 2, 0.05, noise_model="poisson-gaussian", photons=50.0, blur="gaussian",
                blur_width=0.8)
    y = _observe(_sources(8, 2), task)
    method = LeastSquares(task, iterations=20)
    together = method.separate(y)
    alone = torch.cat([method.separate(y[i:i + 1]) for i in range(8)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_consistent_upsampling_pools_back_to_the_data() -> None:
    for weights in (((1.0, 1.0, 1.0),), ((0.7, 0.3), (0.3, 0.7))):
        task = Task(weights, 2, 0.0)
        x = _sources(6, len(weights[0]), seed=4)
        y = _observe(x, task)
        estimate = LeastSquares(task, upsample="consistent").separate(y)
        pooled = torch.nn.functional.avg_pool2d(torch.einsum("ks,nshw->nkhw", task.weight_matrix(), estimate), 2)
        torch.testing.assert_close(pooled, y, atol=1e-5, rtol=0)  # λ = 0: the data are reproduced exactly
        bilinear = LeastSquares(task).separate(y)
        assert (estimate - x).square().mean() < (bilinear - x).square().mean()  # without noise it is closer
    # one detector: the correction splits the residual evenly, so every output is the same image
    task = Task(((1.0, 1.0),), 2, 0.05)
    estimate = LeastSquares(task, upsample="consistent").separate(_observe(_sources(3, 2), task))
    torch.testing.assert_close(estimate[:, 0], estimate[:, 1])
