"""The digit classifier behind the recognisability measure: accurate, cached, order-free matching."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from sepbench import recognise
from sepbench.cell import load_sources
from sepbench.datasets.mixtures import fixed_test_pairs
from sepbench.recognise import (
    load_classifier,
    mixture_labels,
    recognise_outputs,
    recognised,
    truth_recognised,
)

KEY = "mnist:60000:500"


@pytest.fixture(scope="module")
def sources():
    return load_sources()


@pytest.fixture(scope="module")
def classifier(sources):
    """The one that ships with sepbench (verified), loaded once per process."""
    return load_classifier(None, sources)


def test_classifier_reads_mnist_test_digits_above_98_percent(classifier, sources):
    predicted = classifier.predict(sources.test)
    accuracy = float((predicted == sources.test_labels.numpy()).mean())
    assert accuracy > 0.98
    assert classifier.info["test_accuracy"] == pytest.approx(accuracy)
    assert accuracy == 0.9882  # the shipped network, on every machine (its record says how it was trained)
    assert load_classifier() is classifier  # loaded once per process


def test_the_shipped_classifier_is_verified_and_needs_no_data_dir(classifier, tmp_path):
    assert classifier.info["shipped"] and classifier.info["sha256"] == recognise.SHIPPED["mnist"][1]
    assert Path(classifier.info["path"]) == recognise.SHIPPED_DIR / "digit-classifier-v1.pt"
    assert load_classifier(tmp_path) is classifier and recognise.is_cached(tmp_path)
    assert not list(tmp_path.iterdir())  # nothing trained, nothing written


def test_a_damaged_shipped_classifier_is_said_and_not_used(tmp_path, monkeypatch, sources):
    shipped_dir = tmp_path / "shipped"
    shipped_dir.mkdir()
    data = bytearray((recognise.SHIPPED_DIR / "digit-classifier-v1.pt").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit flipped inside the weights
    (shipped_dir / "digit-classifier-v1.pt").write_bytes(bytes(data))
    monkeypatch.setattr(recognise, "SHIPPED_DIR", shipped_dir)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    cached = recognise.DigitClassifier(recognise.DigitNet(), {"seed": 5, "test_accuracy": 0.5})
    recognise._write(recognise.classifier_path(data_dir), cached)  # what this machine trained earlier
    heard: list[str] = []
    try:
        found = load_classifier(data_dir, say=heard.append)
        assert found.info["seed"] == 5 and "shipped" not in found.info
        assert len(heard) == 1 and "shipped with sepbench" in heard[0] and "is damaged: its SHA-256 is" in heard[0]
        assert not recognise.is_cached(tmp_path / "elsewhere")  # a damaged file never counts as a classifier
    finally:
        for key in [k for k in recognise._LOADED if str(tmp_path) in k]:
            recognise._LOADED.pop(key)


def test_matching_is_order_free_and_multiset_exact():
    predicted = np.array([[3, 5], [5, 3], [3, 3], [3, 5], [7, 7]])
    truth = np.array([[5, 3], [5, 3], [3, 5], [3, 3], [7, 7]])
    assert recognised(predicted, truth).tolist() == [True, True, False, False, True]


def test_outputs_equal_to_the_truth_give_the_ceiling(classifier, sources):
    pairs = fixed_test_pairs(500, 60, 2, KEY)
    images = sources.test[:500, 0][pairs]  # (N, S, 28, 28): estimates have no channel axis for one channel
    assert (mixture_labels(sources, 500, 60, 2, KEY) == sources.test_labels[:500][pairs].numpy()).all()
    per_row = recognise_outputs(images, sources, 500, KEY)
    ceiling = truth_recognised(sources, 500, 60, 2, KEY)
    assert per_row.shape == (120,) and (per_row[::2] == per_row[1::2]).all()  # both rows of a mixture agree
    assert (per_row[::2] == ceiling).all() and ceiling.mean() > 0.9
    # swapping the two outputs of every mixture changes nothing; blank outputs are almost never recognised
    assert (recognise_outputs(images.flip(1), sources, 500, KEY) == per_row).all()
    assert recognise_outputs(torch.zeros_like(images), sources, 500, KEY).mean() < 0.2


def test_not_applicable_to_other_sources(sources):
    other = dataclasses.replace(sources, name="fashion")
    assert recognise_outputs(torch.zeros(4, 2, 28, 28), other, 500, KEY) is None
    assert recognise_outputs(torch.zeros(4, 2, 32, 32), sources, 500, KEY) is None
