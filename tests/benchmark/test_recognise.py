"""The digit classifier behind the recognisability measure: accurate, cached, order-free matching."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sepbench.cell import load_sources
from sepbench.datasets.mixtures import fixed_test_pairs
from sepbench.recognise import (
    classifier_path,
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
    """Trained once on a fresh machine (well under 2 minutes on 2 cores), then read from the data dir."""
    return load_classifier(None, sources)


def test_classifier_reads_mnist_test_digits_above_98_percent(classifier, sources):
    predicted = classifier.predict(sources.test)
    accuracy = float((predicted == sources.test_labels.numpy()).mean())
    assert accuracy > 0.98
    assert classifier.info["test_accuracy"] == pytest.approx(accuracy)
    assert classifier_path().is_file()
    assert load_classifier() is classifier  # loaded once per process


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
