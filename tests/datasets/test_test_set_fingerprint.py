"""The test set's fingerprint: a digest of its recipe, equal exactly when the same mixtures would be made."""

from __future__ import annotations

import dataclasses

import torch

from sepbench import Task
from sepbench.datasets.mixtures import make_test_set, recipe_fingerprint

TASK = Task(((1.0, 1.0),), 2, 0.01, source_shape=(4, 4))


def test_equal_recipes_give_equal_fingerprints_and_equal_mixtures() -> None:
    a = recipe_fingerprint("imgs", 500, TASK, 40, "mnist:2000:500")
    assert a == recipe_fingerprint("imgs", 500, Task(((1.0, 1.0),), 2, 0.01, source_shape=(4, 4)), 40,
                                     "mnist:2000:500")
    images = torch.rand(500, 4, 4, generator=torch.Generator().manual_seed(0))
    first, second = make_test_set(images, TASK, 40, "mnist:2000:500"), make_test_set(images, TASK, 40, "mnist:2000:500")
    assert torch.equal(first.y, second.y) and torch.equal(first.x, second.x)


def test_every_part_of_the_recipe_changes_it() -> None:
    base = recipe_fingerprint("imgs", 500, TASK, 40, "mnist:2000:500")
    changed = [
        recipe_fingerprint("other-images", 500, TASK, 40, "mnist:2000:500"),  # other source images
        recipe_fingerprint("imgs", 501, TASK, 40, "mnist:2000:500"),  # other image ids
        recipe_fingerprint("imgs", 500, TASK, 41, "mnist:2000:500"),  # more mixtures
        recipe_fingerprint("imgs", 500, TASK, 40, "mnist:2000:400"),  # another dataset key: other pairs, noise
        recipe_fingerprint("imgs", 10000, TASK, 40, "mnist:2000:500", pairs="paper"),  # the paper's pairs
        recipe_fingerprint("imgs", 500, dataclasses.replace(TASK, sigma=0.1), 40, "mnist:2000:500"),
        recipe_fingerprint("imgs", 500, dataclasses.replace(TASK, weights=((0.7, 0.3),)), 40, "mnist:2000:500"),
        recipe_fingerprint("imgs", 500, dataclasses.replace(TASK, downsample=1), 40, "mnist:2000:500"),
        recipe_fingerprint("imgs", 500, dataclasses.replace(TASK, superpose="uint8-wrap"), 40, "mnist:2000:500"),
        recipe_fingerprint("imgs", 500, dataclasses.replace(TASK, blur="gaussian", blur_width=1.0), 40,
                             "mnist:2000:500"),
        recipe_fingerprint("imgs", 500, TASK, 40, "mnist:2000:500", sets=((0, 250), (250, 250))),
    ]
    assert base not in changed and len(set(changed)) == len(changed)
