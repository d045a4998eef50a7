"""Micro-benchmark: ``score`` on 10,000 two-source MNIST mixtures, with the batched torch SSIM (the default)
against scikit-image's SSIM in a Python loop. Both share a group, so the table shows their ratio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sepbench.metrics import score, ssim_skimage

N_MIXTURES = 10_000


@pytest.fixture(scope="module")
def estimates(mnist) -> tuple[torch.Tensor, torch.Tensor]:
    """Sources: the 10,000 MNIST test digits as 5,000 pairs, twice (second time swapped); noisy estimates."""
    gen = torch.Generator().manual_seed(0)
    ref = mnist.test.reshape(N_MIXTURES // 2, 2, 28, 28)
    est = (ref + 0.1 * torch.randn(ref.shape, generator=gen)).clamp(0, 1)
    return torch.cat([est, est.flip(1)]), torch.cat([ref, ref])


@pytest.mark.benchmark(group="score 10,000 mixtures")
def test_bench_score_fast(benchmark, estimates) -> None:
    rows = benchmark.pedantic(score, args=estimates, rounds=5, warmup_rounds=1)
    assert len(rows) == 2 * N_MIXTURES
    sample = rows.iloc[::200]
    est, ref = estimates
    reference = ssim_skimage(est[sample.mixture.to_numpy(), sample.perm.to_numpy()].double().numpy(),
                             ref[sample.mixture.to_numpy(), sample.source.to_numpy()].double().numpy())
    assert np.abs(sample.ssim.to_numpy() - reference).max() < 1e-5


@pytest.mark.benchmark(group="score 10,000 mixtures")
def test_bench_score_skimage(benchmark, estimates) -> None:
    rows = benchmark.pedantic(score, args=estimates, kwargs={"ssim": ssim_skimage}, rounds=2, warmup_rounds=0)
    assert len(rows) == 2 * N_MIXTURES
