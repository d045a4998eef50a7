"""Micro-benchmark: `ssim_batch` against a loop over scikit-image, on 10,000 pairs of 28×28 images.

Run with ``python -m pytest tests/bench/test_bench_ssim.py -p no:cacheprovider --benchmark-only``; both
sides share the benchmark group, so pytest-benchmark's table shows their ratio directly.
"""

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from sepbench.fast_ssim import ssim_batch

N_PAIRS = 10_000
TORCH_THREADS = 2


@pytest.fixture(scope="module")
def pairs() -> tuple[np.ndarray, np.ndarray]:
    """MNIST-like pairs in [0, 1]: sparse blob images and noisy copies of them, float64."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:28, 0:28]
    ref = np.zeros((N_PAIRS, 28, 28))
    for _ in range(4):
        cy, cx = rng.uniform(6, 22, (2, N_PAIRS, 1, 1))
        sigma = rng.uniform(1.0, 3.0, (N_PAIRS, 1, 1))
        ref += np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / (2 * sigma**2))
    ref[ref < 0.1] = 0.0
    ref = np.clip(ref, 0.0, 1.0)
    est = np.clip(ref + rng.normal(0.0, 0.1, ref.shape), 0.0, 1.0)
    return est, ref


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(TORCH_THREADS)
    yield
    torch.set_num_threads(before)


def _skimage_loop(est: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.array([structural_similarity(e, r, data_range=1.0) for e, r in zip(est, ref, strict=True)])


@pytest.mark.benchmark(group="ssim-10k-28x28")
def test_bench_ssim_batch(benchmark, pairs, torch_threads):
    est, ref = (torch.from_numpy(x) for x in pairs)
    got = benchmark.pedantic(ssim_batch, args=(est, ref), rounds=10, warmup_rounds=1)
    sample = slice(0, N_PAIRS, 50)  # check a sample against scikit-image, outside the timed part
    assert np.abs(got.numpy()[sample] - _skimage_loop(pairs[0][sample], pairs[1][sample])).max() < 1e-5


@pytest.mark.benchmark(group="ssim-10k-28x28")
def test_bench_skimage_loop(benchmark, pairs):
    got = benchmark.pedantic(_skimage_loop, args=pairs, rounds=2, warmup_rounds=0)
    assert got.shape == (N_PAIRS,)
