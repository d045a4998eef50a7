"""The run's progress lines: the ETA follows the plan's estimates, scaled by how far off they were."""

from __future__ import annotations

import io

import pytest

from sepbench import progress as progress_module
from sepbench.progress import RunProgress, format_duration


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", fake)
    return fake


def test_format_duration():
    assert format_duration(59.9) == "0m59s"
    assert format_duration(3 * 3600 + 125) == "3h02m"
    assert format_duration(-5) == "0m00s"


def test_eta_scales_the_estimates_of_what_is_left(clock):
    # longest first: one long cell and eight short ones, two at a time; the estimates are 3× too pessimistic
    expected = {"long": 1500.0, **{name: 300.0 for name in "abcdefgh"}}
    out = io.StringIO()
    progress = RunProgress(9, out, expected=expected, parallel=2)
    progress.started_cell("long")
    progress.started_cell("a")
    assert progress.eta() == "ETA 32m30s"  # before any cell finished: the plan as it is, (1500 + 8 × 300) / 2
    clock.now += 100
    progress.finished_cell("a", {"status": "done", "mse": 0.1, "ssim": 0.5, "seconds": 100.0})
    # scale 1/3: long has 500 s of work, 400 left; b…h 100 s each → (400 + 700) / 2 = 550 s
    assert out.getvalue().rstrip().endswith("ETA 9m10s")
    # (the mean time per finished cell said 100 s × 8 = 13m20s, the plan (1500 + 8 × 300) / 2 = 32m30s)


def test_eta_is_never_below_the_longest_cell_left(clock):
    progress = RunProgress(3, io.StringIO(), expected={"long": 1000.0, "a": 10.0, "b": 10.0}, parallel=4)
    for name in ("long", "a", "b"):
        progress.started_cell(name)
    clock.now += 10
    progress.finished_cell("a", {"status": "done", "mse": 0.1, "ssim": 0.5, "seconds": 10.0})
    assert progress.eta() == "ETA 16m30s"  # long: 1000 − 10 s done, one cell cannot be shared by 4 slots


def test_eta_without_estimates_is_the_mean_time_per_cell(clock):
    progress = RunProgress(4, io.StringIO())  # a GPU run: the CPU estimates do not apply
    progress.started_cell("a")
    clock.now += 30
    progress.finished_cell("a", {"status": "failed", "error": "boom"})
    assert progress.eta() == "ETA 1m30s"



def test_a_failed_cell_does_not_scale_the_eta(clock):
    progress = RunProgress(3, io.StringIO(), expected={"long": 600.0, "bad": 100.0, "c": 100.0}, parallel=1)
    for name in ("long", "bad"):
        progress.started_cell(name)
    clock.now += 1
    progress.finished_cell("bad", {"status": "failed", "error": "shape"})  # fails in a second
    assert progress.eta() == "ETA 11m39s"  # the estimates as they are: long 599 s left, then c 100 s
    clock.now += 199
    progress.finished_cell("c", {"status": "done", "mse": 0.1, "ssim": 0.5, "seconds": 50.0})
    assert progress.eta() == "ETA 1m40s"  # c took half its estimate: long 300 s, 200 of them spent


def test_a_running_cells_epoch_reports_steer_the_eta(clock):
    """A cell that reported half its epochs after 100 s has about 100 s left, whatever the plan said."""
    out = io.StringIO()
    progress = RunProgress(1, out, expected={"unet": 600.0}, parallel=1)
    progress.started_cell("unet")
    report = progress.epoch_reporter("unet")
    clock.now += 100
    assert progress.eta() == "ETA 8m20s"  # the plan: 600 − 100
    report({"epoch": 1, "epochs": 2, "train_loss": 0.1, "val_loss": 0.2, "seconds": 100.0})
    assert progress.eta() == "ETA 1m40s"
    report({"notice": "waiting for the digit classifier"})
    assert out.getvalue().splitlines() == ["    unet: epoch 1/2 train 0.10000 val 0.20000 (100.0s) | ETA 1m40s",
                                           "    unet: waiting for the digit classifier"]


def test_a_resumed_cells_eta_counts_only_the_epochs_it_trains_in_this_run(clock):
    """Resumed after epoch 6 of 8: one epoch in 100 s of this run is half of what it has to do, not 7/8."""
    progress = RunProgress(2, io.StringIO(), expected={"unet": 250.0, "fresh": 2000.0}, parallel=2,
                           resumed={"unet": 6})
    progress.started_cell("unet")
    report = progress.epoch_reporter("unet")
    clock.now += 50
    report({"epoch": 7, "epochs": 8, "step": 50, "steps": 100, "train_loss": 0.1})
    assert progress._left("unet", 250.0, clock.now) == 150.0  # a quarter done in 50 s (7/8 of the cell: 7 s)
    clock.now += 50
    report({"epoch": 7, "epochs": 8, "step": 100, "steps": 100, "train_loss": 0.1, "val_loss": 0.2,
            "seconds": 100.0})
    assert progress._left("unet", 250.0, clock.now) == 100.0
    progress.started_cell("fresh")  # no checkpoint: its epochs count from the first
    fresh = progress.epoch_reporter("fresh")
    clock.now += 30
    fresh({"epoch": 1, "epochs": 8, "step": 50, "steps": 100, "train_loss": 0.1})
    assert progress._left("fresh", 2000.0, clock.now) == 30 * 7.5 / 0.5
    progress.resumed["fresh"] = 6  # its checkpoint turned out unusable: epoch 1 reports mean it starts over
    fresh({"epoch": 1, "epochs": 8, "step": 50, "steps": 100, "train_loss": 0.1})
    assert progress._left("fresh", 2000.0, clock.now) == 30 * 7.5 / 0.5


def test_a_resumed_cell_scales_the_eta_by_this_runs_seconds(clock):
    """A resumed cell's record counts the earlier epochs in `seconds`; the ETA's scale compares this run's."""
    progress = RunProgress(2, io.StringIO(), expected={"resumed": 100.0, "next": 400.0}, parallel=1)
    progress.started_cell("resumed")
    clock.now += 100
    progress.finished_cell("resumed", {"status": "done", "mse": 0.1, "ssim": 0.5, "seconds": 800.0,
                                       "fit_seconds_before_resume": 700.0})
    assert progress.eta() == "ETA 6m40s"  # its estimate was right (100 s): next keeps its 400 s, not 8× that
