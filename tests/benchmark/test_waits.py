"""Long waits say what they wait for: the digit classifier's lock held by another run; the machine's speed is
measured once per hardware key and cached."""

from __future__ import annotations

import fcntl
import json
import threading
import time

import pytest

from sepbench import calibration, recognise
from sepbench.calibration import cache as calibration_cache


def test_waiting_on_the_classifier_lock_says_what_and_where(tmp_path, monkeypatch):
    """Another run holds the classifier's lock (and is training it): the waiter says so at once, naming the lock
    and what it waits for, then loads what the other run cached instead of training its own."""
    monkeypatch.setattr(recognise, "SHIPPED", {})  # the training path, as for a dataset whose classifier is not shipped
    lock_path = tmp_path / f".{recognise.CACHE_NAME}.lock"
    heard: list[str] = []
    result: dict = {}
    with open(lock_path, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the "other run"
        waiter = threading.Thread(target=lambda: result.update(c=recognise.load_classifier(tmp_path, say=heard.append)))
        waiter.start()
        deadline = time.monotonic() + 30
        while not heard and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(heard) == 1 and waiter.is_alive()  # it says so while it waits
        assert "waiting for the digit classifier, which another run is training" in heard[0]
        assert f"holds the lock {lock_path}" in heard[0] and "about " in heard[0]
        # the other run finishes: it caches its classifier, then lets go
        trained = recognise.DigitClassifier(recognise.DigitNet(), {"seed": 7, "test_accuracy": 0.5})
        recognise._write(recognise.classifier_path(tmp_path), trained)
        fcntl.flock(held, fcntl.LOCK_UN)
    waiter.join(30)
    assert not waiter.is_alive()
    assert result["c"].info["seed"] == 7  # the other run's, not one trained here
    assert len(heard) == 2 and heard[1].startswith(f"  … got the lock {lock_path} after ")
    recognise._LOADED.pop(str(recognise.classifier_path(tmp_path)), None)


def test_the_machine_speed_is_measured_once_per_hardware_key(tmp_path, monkeypatch):
    monkeypatch.delenv(calibration.ENV, raising=False)
    monkeypatch.setattr(calibration, "ROUND_SECONDS", 0.05)
    monkeypatch.setattr(calibration_cache.os, "getloadavg", lambda: (0.1, 0.1, 0.1))  # a quiet machine
    heard: list[str] = []
    speed = calibration.machine_speed(tmp_path, say=heard.append)
    path = tmp_path / calibration.CACHE_NAME
    entries = json.loads(path.read_text())
    key = calibration.hardware_key()
    assert list(entries) == [key] and entries[key]["speed"] == pytest.approx(speed) and speed > 0
    assert entries[key]["reference_rate"] == pytest.approx(speed * calibration.REFERENCE_RATE)
    assert len(heard) == 1 and "measuring this machine's training speed once" in heard[0] and str(path) in heard[0]
    assert calibration.machine_speed(tmp_path, say=heard.append) == speed and len(heard) == 1  # reused, silent
    # another CPU (or core count, or torch): measured again, both kept
    monkeypatch.setattr(calibration_cache, "cpu_model", lambda: "Another CPU 9000")
    calibration.machine_speed(tmp_path, say=heard.append)
    assert len(heard) == 2 and "Another CPU 9000" in heard[1]
    assert set(json.loads(path.read_text())) == {key, calibration.hardware_key()}
    monkeypatch.setenv(calibration.ENV, "2.5")  # fixed by the environment: nothing measured
    assert calibration.machine_speed(tmp_path, say=heard.append) == 2.5 and len(heard) == 2


def test_a_speed_measured_on_a_busy_machine_is_measured_again_once_it_is_quieter(tmp_path, monkeypatch):
    monkeypatch.delenv(calibration.ENV, raising=False)
    monkeypatch.setattr(calibration, "ROUND_SECONDS", 0.05)
    cores = calibration_cache.os.cpu_count()
    monkeypatch.setattr(calibration_cache.os, "getloadavg", lambda: (4.0 * cores, 1.0, 1.0))
    heard: list[str] = []
    calibration.machine_speed(tmp_path, say=heard.append)
    calibration.machine_speed(tmp_path, say=heard.append)
    assert len(heard) == 1  # as busy as before: the provisional speed is reused
    monkeypatch.setattr(calibration_cache.os, "getloadavg", lambda: (0.2 * cores, 1.0, 1.0))
    calibration.machine_speed(tmp_path, say=heard.append)
    assert len(heard) == 2  # quieter: measured again, and now final
    entry = json.loads((tmp_path / calibration.CACHE_NAME).read_text())[calibration.hardware_key()]
    assert entry["load"][0] == 0.2 * cores
    calibration.machine_speed(tmp_path, say=heard.append)
    assert len(heard) == 2


def test_a_bad_fixed_speed_is_one_clear_error(monkeypatch, tmp_path):
    from sepbench.errors import UserError

    monkeypatch.setenv(calibration.ENV, "fast")
    with pytest.raises(UserError, match=r"SEPBENCH_CALIBRATION='fast': expected a speed > 0"):
        calibration.machine_speed(tmp_path)


def test_a_run_counts_the_classifiers_training_and_says_when_it_waits_for_it(tmp_path, write_grid, monkeypatch):
    """A run whose data dir has no classifier yet, while another run holds its lock: the expected duration
    counts the training, and the run says what it waits for before any cell starts."""
    import io

    from sepbench.grid import load_grid
    from sepbench.runner import run_grid

    grid = load_grid(str(write_grid({"scenarios": {"single": {"weights": [[1, 1]], "downsample": 2}},
                                     "noise": [0.1], "methods": [{"method": "fcsae", "params": {"hidden": 32}}]})))
    monkeypatch.setattr(recognise, "SHIPPED", {})  # the training path, as for a dataset whose classifier is not shipped
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    stream = io.StringIO()
    status: dict = {}
    lock_path = data_dir / f".{recognise.CACHE_NAME}.lock"
    with open(lock_path, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        runner = threading.Thread(target=lambda: status.update(code=run_grid(
            grid, out=tmp_path / "run", executor="local", data_dir=data_dir, progress_stream=stream)))
        runner.start()
        deadline = time.monotonic() + 120
        while "waiting for the digit classifier" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
        recognise._write(recognise.classifier_path(data_dir),
                         recognise.DigitClassifier(recognise.DigitNet(), {"seed": 3, "test_accuracy": 0.1}))
        fcntl.flock(held, fcntl.LOCK_UN)
    runner.join(300)
    recognise._LOADED.pop(str(recognise.classifier_path(data_dir)), None)
    assert status["code"] == 0
    lines = stream.getvalue().splitlines()
    expected = next(line for line in lines if "expected about" in line)
    assert "(the digit classifier's one-off training, 1 cells, 1 at a time)" in expected
    waiting = next(i for i, line in enumerate(lines) if "waiting for the digit classifier" in line)
    assert str(lock_path) in lines[waiting]
    assert waiting < next(i for i, line in enumerate(lines) if line.startswith("[1/1]"))


def test_cells_that_run_side_by_side_are_calibrated_side_by_side(tmp_path, monkeypatch):
    """With two cells at a time the reference workload runs as two processes at once (a barrier starts their
    timing together: one process alone would never pass it), cached under its own key beside the one-cell speed."""
    monkeypatch.delenv(calibration.ENV, raising=False)
    monkeypatch.setattr(calibration, "ROUND_SECONDS", 0.05)
    monkeypatch.setattr(calibration_cache.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    heard: list[str] = []
    alone = calibration.machine_speed(tmp_path, say=heard.append)
    two = calibration.machine_speed(tmp_path, say=heard.append, parallel=2)
    assert alone > 0 and two > 0 and len(heard) == 2 and "2 cells at a time" in heard[1]
    entries = json.loads((tmp_path / calibration.CACHE_NAME).read_text())
    key = calibration.hardware_key()
    assert set(entries) == {key, f"{key} | 2 cells at a time"}
    assert entries[f"{key} | 2 cells at a time"]["speed"] == pytest.approx(two)
    assert calibration.machine_speed(tmp_path, say=heard.append, parallel=2) == two and len(heard) == 2  # cached
