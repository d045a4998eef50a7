"""The plan's ETA learns from the cells that ran here: each finished CPU cell leaves its effective speed, the next
plan on the same hardware times that method's cells with it; the run's length is the makespan of the cells handed
out longest first, not their mean load."""

from __future__ import annotations

import io
import json

import pytest

from sepbench import calibration
from sepbench.calibration import observed
from sepbench.calibration.observed import ObservedSpeeds, record


@pytest.fixture
def quiet(monkeypatch):
    monkeypatch.setattr(observed.os, "getloadavg", lambda: (0.2, 0.2, 0.2))


def test_a_method_is_timed_by_the_median_of_its_last_cells(tmp_path, quiet):
    path, key = tmp_path / observed.OBSERVED_NAME, "CPU X | 2 cores | torch 9 | 2 cells at a time"
    for seconds in (100.0, 50.0, 40.0):  # reference estimate 100 s: effective speeds 1.0, 2.0, 2.5
        assert record(path, key, "unet", 100.0, seconds, calibrated=2.0, at_once=2)
    speeds = ObservedSpeeds(path, key)
    assert speeds.speed("unet", 2.0) == (pytest.approx(2.0), True)
    # a method never seen here: the calibrated speed times the seen methods' typical observed/calibrated ratio
    assert speeds.speed("ligt", 3.0) == (pytest.approx(3.0 * 1.0), False)
    for _ in range(observed.KEEP):  # the machine got twice as slow: the old samples age out
        record(path, key, "unet", 100.0, 200.0, calibrated=2.0, at_once=2)
    assert ObservedSpeeds(path, key).speed("unet", 2.0)[0] == pytest.approx(0.5)
    assert len(json.loads(path.read_text())[key]["unet"]) == observed.KEEP
    # another key (other hardware, or one cell at a time) knows nothing of it
    assert ObservedSpeeds(path, "CPU X | 2 cores | torch 9").speed("unet", 2.0) == (2.0, False)


def test_cells_on_a_busy_machine_or_too_short_are_not_kept(tmp_path, monkeypatch):
    path = tmp_path / observed.OBSERVED_NAME
    monkeypatch.setattr(observed.os, "getloadavg", lambda: (5.0 * (observed.os.cpu_count() or 1), 1.0, 1.0))
    assert not record(path, "k", "unet", 100.0, 50.0, calibrated=1.0, at_once=1)
    monkeypatch.setattr(observed.os, "getloadavg", lambda: (0.5, 0.5, 0.5))
    assert not record(path, "k", "unet", 100.0, 0.2, calibrated=1.0)  # start-up noise
    assert not path.exists()
    assert record(path, "k", "unet", 100.0, 50.0, calibrated=1.0)


def test_a_damaged_file_costs_only_the_correction(tmp_path, quiet):
    path = tmp_path / observed.OBSERVED_NAME
    path.write_text('{"k": {"unet": [{"speed": "fast"}, {"speed": -1, "calibrated": 1}], "ica": 3}, "x"')
    assert len(ObservedSpeeds(path, "k")) == 0
    path.write_text('{"k": {"unet": [{"speed": "fast"}, {"speed": 4.0, "calibrated": 2.0}], "ica": 3}}')
    speeds = ObservedSpeeds(path, "k")
    assert speeds.speed("unet", 1.0) == (4.0, True) and speeds.speed("ica", 1.0) == (2.0, False)
    assert record(path, "k", "ica", 10.0, 5.0, calibrated=1.0)  # and it is written again, whole
    assert ObservedSpeeds(path, "k").speed("ica", 1.0) == (2.0, True)


def test_the_expected_duration_is_the_makespan_of_longest_first(tmp_path):
    from sepbench.grid import load_grid
    from sepbench.plan import plan_grid
    from sepbench.runner import expected_duration

    cell = plan_grid(load_grid("quick")).cells[0]

    def cells(*seconds):
        return [cell.__class__(**{**cell.__dict__, "expected_seconds": s}) for s in seconds]

    assert expected_duration(cells(10, 10, 10), 2) == 20  # not 15: the third cell waits for a free slot
    assert expected_duration(cells(3, 9, 4, 3, 5), 2) == 12  # 9 | 5 4, then 3 → 12 | 3 → 12
    assert expected_duration(cells(7, 1, 1), 4) == 7
    assert expected_duration(cells(2, 2), 1) == 4


def test_a_second_run_is_timed_by_what_the_first_run_took(tmp_path, write_grid, monkeypatch, quiet):
    """A real run (local executor) leaves each method's effective speed; the next run on the same hardware says
    it used them and plans those cells with them."""
    from sepbench.grid import load_grid
    from sepbench.runner import run_grid

    monkeypatch.delenv(calibration.ENV, raising=False)
    monkeypatch.setattr(observed, "MIN_SECONDS", 0.0)  # tiny cells, however fast this machine runs them
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    # a calibration as if measured here (nothing is measured in the test): 1.0
    (data_dir / calibration.CACHE_NAME).write_text(json.dumps(
        {calibration.speed_key(1): {"speed": 1.0, "reference_rate": 1000.0, "load": [0.1, 0.1, 0.1]}}))
    grid = load_grid(str(write_grid({"scenarios": {"single": {"weights": [[1, 1]], "downsample": 2}},
                                     "noise": [0.1], "train": {"mixtures": 512, "epochs": 2, "batch_size": 64},
                                     "methods": ["average", {"method": "fcsae", "params": {"hidden": 32}}]})))
    first = io.StringIO()
    assert run_grid(grid, out=tmp_path / "one", executor="local", data_dir=data_dir, progress_stream=first) == 0
    expected = next(line for line in first.getvalue().splitlines() if "expected about" in line)
    assert "timed as their cells ran here" not in expected
    kept = json.loads((data_dir / observed.OBSERVED_NAME).read_text())[calibration.speed_key(1)]
    cells = {json.loads(p.read_text())["config"]["method"]: json.loads(p.read_text())
             for p in (tmp_path / "one" / "cells").glob("*.json")}
    assert set(kept) == {"average", "fcsae"}  # each cell's speed: what it took against its estimate
    from sepbench.plan import plan_grid

    estimate = next(c.expected_seconds for c in plan_grid(grid).cells if c.method == "fcsae")
    assert kept["fcsae"][0]["speed"] == pytest.approx(estimate / cells["fcsae"]["seconds"], rel=1e-6)
    assert kept["fcsae"][0]["calibrated"] == 1.0
    second = io.StringIO()
    assert run_grid(grid, out=tmp_path / "two", executor="local", data_dir=data_dir, progress_stream=second) == 0
    expected = next(line for line in second.getvalue().splitlines() if "expected about" in line)
    assert "2 of its 2 methods timed as their cells ran here before" in expected
    speeds = ObservedSpeeds(data_dir / observed.OBSERVED_NAME, calibration.speed_key(1))
    assert len(speeds.samples["fcsae"]) == 2  # the second run's cells were kept too
