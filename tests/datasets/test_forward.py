"""The forward model: y = D(W·x) + g, and how mixtures are drawn."""

import torch

from sepbench.api import Task
from sepbench.datasets.forward import downsample, downsample_adjoint, observe, superimpose
from sepbench.datasets.mixtures import TrainingData, make_test_set

SINGLE = Task(((1.0, 1.0),), 2, 0.0)
DUAL = Task(((0.7, 0.3), (0.3, 0.7)), 2, 0.05)


def test_pooling_equals_2x2_block_means():
    z = torch.rand(3, 2, 28, 28, generator=torch.Generator().manual_seed(1))
    pooled = downsample(z, 2)
    assert pooled.shape == (3, 2, 14, 14)
    for i, j in [(0, 0), (5, 9), (13, 13)]:
        block = z[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
        torch.testing.assert_close(pooled[:, :, i, j], block.mean(dim=(-2, -1)))


def test_downsample_adjoint_is_the_adjoint_of_pooling():
    gen = torch.Generator().manual_seed(0)
    for factor in (1, 2, 4):
        z = torch.rand(3, 2, 28, 28, generator=gen, dtype=torch.float64)
        y = torch.rand(3, 2, 28 // factor, 28 // factor, generator=gen, dtype=torch.float64)
        assert torch.allclose((downsample(z, factor) * y).sum(), (z * downsample_adjoint(y, factor)).sum())
        assert torch.allclose(downsample(downsample_adjoint(y, factor), factor), y / factor**2)


def test_superposition_weights_rows_are_observations():
    x = torch.rand(4, 2, 28, 28)
    z = superimpose(x, DUAL.weight_matrix())
    torch.testing.assert_close(z[:, 1], 0.3 * x[:, 0] + 0.7 * x[:, 1])


def test_noise_std_within_5_percent_of_sigma():
    sigma = 0.1
    x = torch.zeros(1000, 2, 28, 28)  # 1000 × 196 = 196,000 noisy pixels
    y, _ = observe(x, SINGLE.weight_matrix(), 2, sigma, torch.Generator().manual_seed(0))
    assert y.numel() >= 100_000
    assert abs(float(y.std()) - sigma) < 0.05 * sigma
    assert abs(float(y.mean())) < 0.01 * sigma * 10


def _images(n=300, seed=0):
    return torch.rand(n, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_same_seed_same_training_mixtures_and_different_seed_differs():
    task = Task(SINGLE.weights, 2, 0.05)
    a = next(TrainingData(_images(), task, 128, seed=3).epoch(64))
    b = next(TrainingData(_images(), task, 128, seed=3).epoch(64))
    c = next(TrainingData(_images(), task, 128, seed=4).epoch(64))
    for ta, tb in zip(a, b, strict=True):
        assert torch.equal(ta, tb)
    assert not torch.equal(a.y, c.y)


def test_training_epochs_draw_fresh_mixtures_with_distinct_sources():
    data = TrainingData(_images(), Task(SINGLE.weights, 2, 0.0), 64, seed=0)
    first, second = next(data.epoch(64)), next(data.epoch(64))
    assert not torch.equal(first.x, second.x)
    assert not torch.equal(first.x[:, 0], first.x[:, 1])  # partners differ from the first image
    torch.testing.assert_close(first.z[:, 0], first.x.sum(1))
    torch.testing.assert_close(first.y, downsample(first.z, 2))  # σ = 0: y is the pooled superposition


def test_test_set_is_fixed_and_independent_of_training_seed():
    images = _images()
    task = Task(DUAL.weights, 2, 0.05)
    before = make_test_set(images, task, 50, "mnist:test")
    TrainingData(images, task, 64, seed=7)  # building training data must not touch the test stream
    torch.manual_seed(1234)
    after = make_test_set(images, task, 50, "mnist:test")
    for ta, tb in zip(before, after, strict=True):
        assert torch.equal(ta, tb)


def test_test_pairs_shared_across_sigma_noise_differs():
    images = _images()
    low = make_test_set(images, Task(SINGLE.weights, 2, 0.01), 40, "k")
    high = make_test_set(images, Task(SINGLE.weights, 2, 0.2), 40, "k")
    assert torch.equal(low.x, high.x)
    assert not torch.equal(low.y, high.y)
