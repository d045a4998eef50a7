"""Validation mixtures are made of held-out training images only: training mixtures never contain them, the split
is the same for every seed, and with the paper's pairs the held-out images are the ones no pair names."""

from __future__ import annotations

import pytest
import torch

from sepbench import Task
from sepbench.datasets import paper
from sepbench.datasets.mixtures import VALIDATION_SHARE, TrainingData, validation_split

TASK = Task(((1.0, 1.0),), 1, 0.0, source_shape=(2, 2))


def labelled_images(n: int) -> torch.Tensor:
    """Image i is the constant i / n: a source in a batch names the image it is."""
    return (torch.arange(n, dtype=torch.float64) / n).float().view(n, 1, 1).expand(n, 2, 2).contiguous()


def names(x: torch.Tensor, n: int) -> set[int]:
    return set(torch.round(x[..., 0, 0].double() * n).long().flatten().tolist())


@pytest.mark.parametrize("seed", [0, 1])
def test_training_mixtures_never_contain_a_validation_image(seed: int) -> None:
    n = 600
    data = TrainingData(labelled_images(n), TASK, 2000, seed=seed, n_validation=300)
    held = names(data.validation.x, n)
    trained: set[int] = set()
    for _ in range(3):
        for batch in data.epoch(500):
            trained |= names(batch.x, n)
    assert held and not held & trained
    assert data.n_validation_images == round(n * VALIDATION_SHARE) == 50
    assert held <= set(data.val_pool.tolist()) and len(trained) == n - 50  # 6,000 draws reach every other image


def test_the_split_is_fixed_by_the_number_of_images_alone() -> None:
    a = TrainingData(labelled_images(600), TASK, 64, seed=0)
    b = TrainingData(labelled_images(600), TASK, 64, seed=7)
    assert torch.equal(a.val_pool, b.val_pool)
    assert not torch.equal(a.validation.x, b.validation.x)  # the mixtures themselves are the seed's own
    c = TrainingData(labelled_images(601), TASK, 64, seed=0)
    assert not torch.equal(a.val_pool, c.val_pool[:50])


def test_one_set_per_source_holds_out_part_of_each_set() -> None:
    train_pool, train_sets, val_pool, val_sets = validation_split(360, ((0, 120), (120, 240)), 2, torch.device("cpu"))
    assert val_sets == ((0, 10), (10, 20)) and train_sets == ((0, 110), (110, 220))
    assert set(val_pool[:10].tolist()) <= set(range(120)) and set(val_pool[10:].tolist()) <= set(range(120, 360))
    assert not set(train_pool.tolist()) & set(val_pool.tolist()) and len(train_pool) + len(val_pool) == 360


def test_too_few_images_to_hold_any_out_is_refused() -> None:
    with pytest.raises(ValueError, match="too few to hold"):
        TrainingData(labelled_images(5), TASK, 64, seed=0)


def test_with_the_papers_pairs_the_images_they_never_name_are_held_out() -> None:
    n = 60000
    data = TrainingData(labelled_images(n), TASK, 2000, seed=0, n_validation=500, pairs="paper")
    used = set(torch.from_numpy(paper.permutation("train")[:2000]).tolist()) | set(range(2000))
    assert not names(data.validation.x, n) & used
    assert data.n_validation_images == n - len(used)
