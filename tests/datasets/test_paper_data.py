"""The public code's data: uint8 wrap-around superposition, its fixed training pairs and its test pairs."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from sepbench import Task, UserError
from sepbench.datasets import paper
from sepbench.datasets.forward import observe, wrap_uint8
from sepbench.datasets.mixtures import TrainingData, make_test_set


def test_uint8_wrap_is_the_public_codes_sum() -> None:
    a = torch.tensor([200, 100, 255, 0, 128]) / 255
    b = torch.tensor([100, 100, 1, 7, 128]) / 255
    expected = ((a * 255).round().to(torch.uint8) + (b * 255).round().to(torch.uint8)).float() / 255
    torch.testing.assert_close(wrap_uint8(a + b), expected)
    assert round(float(wrap_uint8(a + b)[0]) * 255) == 44  # 200 + 100 → 44


def test_observe_wraps_the_superposition_but_not_the_sources() -> None:
    x = torch.full((1, 2, 4, 4), 200 / 255)
    weights = torch.tensor([[1.0, 1.0]])
    y, z = observe(x, weights, 2, 0.0, torch.Generator(), "uint8-wrap")
    torch.testing.assert_close(z, torch.full_like(z, 144 / 255))
    torch.testing.assert_close(y, torch.full_like(y, 144 / 255))
    y_sum, z_sum = observe(x, weights, 2, 0.0, torch.Generator(), "sum")
    torch.testing.assert_close(z_sum, torch.full_like(z_sum, 400 / 255))
    with pytest.raises(ValueError, match="superpose"):
        observe(x, weights, 2, 0.0, torch.Generator(), "max")


@pytest.mark.parametrize(("split", "fixed_points"), [("train", 2), ("test", 1)])
def test_shipped_pairs_are_the_papers_permutations(split: str, fixed_points: int) -> None:
    perm = paper.permutation(split)
    n = paper.SPLIT_SIZES[split]
    assert perm.shape == (n,) and np.array_equal(np.sort(perm), np.arange(n))
    assert int((perm == np.arange(n)).sum()) == fixed_points  # as the shared README states
    pairs = paper.paper_pairs(split, 5, n)
    assert pairs[:, 0].tolist() == list(range(5)) and pairs[:, 1].tolist() == perm[:5].tolist()


def test_damaged_pairs_file_is_refused(monkeypatch) -> None:
    paper.permutation.cache_clear()
    monkeypatch.setitem(paper.SHA256, "test", hashlib.sha256(b"other").hexdigest())
    with pytest.raises(UserError, match="damaged"):
        paper.permutation("test")
    paper.permutation.cache_clear()


def test_pairs_that_do_not_fit_are_refused() -> None:
    with pytest.raises(UserError, match="index all 10000"):
        paper.paper_pairs("test", 10, 500)
    with pytest.raises(UserError, match="10000 test pairs"):
        paper.paper_pairs("test", 10001, 10000)


def test_fixed_training_pairs_repeat_every_epoch_with_fresh_noise() -> None:
    images = torch.rand(60000, 2, 2)
    task = Task(((1.0, 1.0),), 1, 0.01, source_shape=(2, 2), superpose="uint8-wrap")
    data = TrainingData(images, task, 96, seed=0, n_validation=8, pairs="paper")
    first, second = list(data.epoch(32)), list(data.epoch(32))
    expected = images[torch.from_numpy(paper.permutation("train")[:96])]
    for a, b, start in zip(first, second, range(0, 96, 32), strict=True):
        torch.testing.assert_close(a.x, b.x)  # the same pairs, in the same order
        torch.testing.assert_close(a.x[:, 0], images[start:start + 32])
        torch.testing.assert_close(a.x[:, 1], expected[start:start + 32])
        assert not torch.equal(a.y, b.y)  # noise drawn afresh
        assert float(a.z.max()) <= 1.0  # wrapped
    fresh = TrainingData(images, task, 96, seed=0, n_validation=8)
    assert not torch.equal(next(fresh.epoch(32)).x, next(fresh.epoch(32)).x)


def test_paper_test_set_uses_the_paper_pairs() -> None:
    images = torch.rand(10000, 2, 2)
    task = Task(((1.0, 1.0),), 1, 0.0, source_shape=(2, 2))
    test = make_test_set(images, task, 64, "mnist:60000:10000", pairs="paper")
    perm = torch.from_numpy(paper.permutation("test")[:64])
    torch.testing.assert_close(test.x[:, 0], images[:64])
    torch.testing.assert_close(test.x[:, 1], images[perm])
