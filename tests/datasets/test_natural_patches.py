"""natural-patches end to end, offline: shapes, range, determinism, and train/test photographs disjoint."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from sepbench.datasets import base, natural_patches
from sepbench.datasets.natural_patches import TEST_PHOTOS, TRAIN_PHOTOS, load_natural_patches, photo
from sepbench.errors import UserError


@pytest.fixture(scope="module")
def grey() -> base.SourceImages:
    """The default dataset, loaded with every socket refused (no network is used)."""
    original = socket.socket.connect

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("natural-patches must not use the network")

    socket.socket.connect = refuse
    try:
        return load_natural_patches()
    finally:
        socket.socket.connect = original


def row_hashes(x: torch.Tensor) -> set[bytes]:
    flat = x.reshape(len(x), -1).numpy()
    return {hashlib.sha256(row.tobytes()).digest() for row in flat}


def test_shapes_range_and_no_labels(grey: base.SourceImages) -> None:
    assert grey.train.shape == (50_000, 1, 32, 32) and grey.test.shape == (5_000, 1, 32, 32)
    assert grey.train.dtype == torch.float32 and grey.train_labels is None and grey.test_labels is None
    assert float(grey.train.min()) >= 0.0 and float(grey.train.max()) <= 1.0
    assert float(grey.test.min()) >= 0.0 and float(grey.test.max()) <= 1.0
    # no near-flat patch: every patch has some structure
    assert float(grey.train.double().std(dim=(1, 2, 3)).min()) >= natural_patches.FLAT_STD - 1e-4
    assert float(grey.test.double().std(dim=(1, 2, 3)).min()) >= natural_patches.FLAT_STD - 1e-4
    assert len(row_hashes(grey.train)) > 49_000  # distinct patches, not one window repeated


def test_deterministic(grey: base.SourceImages) -> None:
    again = load_natural_patches()
    assert torch.equal(again.train, grey.train) and torch.equal(again.test, grey.test)
    assert again.fingerprint == grey.fingerprint and len(grey.fingerprint) == 16


def test_train_and_test_photographs_are_disjoint(grey: base.SourceImages) -> None:
    assert not set(TRAIN_PHOTOS) & set(TEST_PHOTOS)
    assert {"motorcycle_left", "motorcycle_right"} <= set(TRAIN_PHOTOS)  # the stereo pair: one side
    assert "cat" not in TRAIN_PHOTOS + TEST_PHOTOS  # the same photograph as chelsea
    train_pixels = {hashlib.sha256(photo(n).tobytes()).digest() for n in TRAIN_PHOTOS}
    test_pixels = {hashlib.sha256(photo(n).tobytes()).digest() for n in TEST_PHOTOS}
    assert len(train_pixels) == len(TRAIN_PHOTOS) and len(test_pixels) == len(TEST_PHOTOS)
    assert not train_pixels & test_pixels
    assert not row_hashes(grey.test) & row_hashes(grey.train)  # no test patch equals any training patch


def test_patches_are_cut_from_the_photographs(grey: base.SourceImages) -> None:
    """A patch is the BT.601 luma of a window of one training photograph (found by brute force for a sample)."""
    lumas = [natural_patches._grey(photo(n)).astype(np.float32) for n in TRAIN_PHOTOS]
    sums = [np.lib.stride_tricks.sliding_window_view(g.astype(np.float64), 32, axis=0).sum(-1) for g in lumas]
    sums = [np.lib.stride_tricks.sliding_window_view(s, 32, axis=1).sum(-1) for s in sums]  # window sums
    for index in (0, 12_345, 49_999):
        target = grey.train[index, 0].numpy()
        found = 0
        for g, s in zip(lumas, sums, strict=True):
            for y, x in zip(*np.nonzero(np.abs(s - target.sum(dtype=np.float64)) < 1e-3), strict=True):
                found += np.array_equal(g[y:y + 32, x:x + 32], target)
        assert found >= 1


def test_options_patch_and_colour(grey: base.SourceImages) -> None:
    small = load_natural_patches(patch=16)
    assert small.train.shape == (50_000, 1, 16, 16) and small.test.shape == (5_000, 1, 16, 16)
    assert small.fingerprint != grey.fingerprint
    colour = load_natural_patches(color=True)
    assert colour.train.shape == (50_000, 3, 32, 32) and colour.channels == 3
    assert colour.fingerprint != grey.fingerprint
    # the same windows as the grey set: luma of the colour patch is the grey patch
    weights = torch.tensor(natural_patches.LUMA, dtype=torch.float64).view(1, 3, 1, 1)
    luma = (colour.test.double() * weights).sum(dim=1, keepdim=True)
    assert torch.allclose(luma.float(), grey.test, atol=2e-6)


def test_dataset_class() -> None:
    cls = base._DATASETS["natural-patches"]
    assert (cls.train_count, cls.test_count, cls.labelled) == (50_000, 5_000, False)
    dataset = cls(patch=24, color=True)
    assert dataset.image_size == (24, 24) and dataset.channels == 3
    assert cls().image_size == (32, 32) and cls().channels == 1
    assert cls().present(Path("/nonexistent"))  # needs no data dir: scikit-image ships the photographs
    for bad in ({"patch": 4}, {"patch": 200}, {"patch": 32.0}, {"patch": True}, {"color": "yes"}):
        with pytest.raises(UserError, match="natural-patches"):
            cls(**bad)
