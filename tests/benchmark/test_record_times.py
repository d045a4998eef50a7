"""A resumed cell's training time: the epochs before its interruption are counted (sepbench.record_times)."""

from __future__ import annotations

import pytest

from sepbench.record_times import count_time_before_resume, seconds_before_resume

HISTORY = [{"epoch": 1, "elapsed": 100.0}, {"epoch": 2, "elapsed": 210.5}, {"epoch": 3, "elapsed": 330.0}]


@pytest.mark.parametrize(("history", "epoch", "expected"), [
    (HISTORY, 2, 210.5),
    (HISTORY, 1, 100.0),
    (HISTORY, 4, 0.0),  # an epoch the history does not have
    (None, 2, 0.0),
    ("not a list", 2, 0.0),
    ([{"epoch": 2, "elapsed": True}], 2, 0.0),  # a bool is not a time
    ([{"epoch": 2, "elapsed": -5}], 2, 0.0),
    ([{"epoch": 2, "elapsed": "210"}], 2, 0.0),
    ([["epoch", 2]], 2, 0.0),
])
def test_seconds_before_resume(history, epoch, expected):
    assert seconds_before_resume(history, epoch) == expected


def test_a_legacy_resumed_record_gets_the_earlier_epochs_added():
    record = {"resumed_from_epoch": 2, "history": HISTORY, "fit_seconds": 130.0, "seconds": 170.0}
    out = count_time_before_resume(record)
    assert out["fit_seconds_before_resume"] == 210.5
    assert out["fit_seconds"] == pytest.approx(340.5)
    assert out["seconds"] == pytest.approx(380.5)


def test_a_record_that_counts_them_already_or_was_not_resumed_is_unchanged():
    today = {"resumed_from_epoch": 2, "history": HISTORY, "fit_seconds": 340.5, "seconds": 380.5,
             "fit_seconds_before_resume": 210.5}
    assert count_time_before_resume(dict(today)) == today
    fresh = {"history": HISTORY, "fit_seconds": 330.0, "seconds": 370.0}
    assert count_time_before_resume(dict(fresh)) == fresh
