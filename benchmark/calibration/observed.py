"""What each method's cells really took on this machine, kept for the next plan.

The calibration's reference workload says how fast the CPU is; how fast a given method runs on it also depends on
things a second of plain convolutions does not see (attention, large dense layers, memory traffic when cells share
the cores). So every finished CPU cell leaves its *effective speed* here: the plan's estimate at the reference
speed over the seconds it took. The next plan on the same hardware (same key: CPU, cores, torch, cells at a time)
divides a method's estimates by the median of its last few effective speeds; a method never seen here uses the
calibrated speed times the typical ratio of observed to calibrated speed of the methods that were.

Cells that finished while other work kept the cores busy are not recorded (their speed says nothing of the
machine's). The file lives beside the calibration cache in the data dir; a file that cannot be read or written
only costs the next plan its correction.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from sepbench.calibration.cache import read_json, write_json

OBSERVED_NAME = "observed-speeds-v1.json"
KEEP = 6  # the last few cells of a method: recent enough to follow a machine whose speed drifts
MIN_SECONDS = 1.0  # shorter cells are mostly start-up noise


def busy_elsewhere(at_once: int) -> bool:
    """Whether the cores are clearly busier than ``at_once`` running cells make them (another run, a build)."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return False
    return load > at_once + 0.5 * (os.cpu_count() or 1)


def record(path: Path, key: str, method: str, reference_seconds: float, seconds: float, calibrated: float,
           at_once: int = 1) -> bool:
    """Keep one finished cell's effective speed (``reference_seconds`` / ``seconds``) for ``method`` under ``key``,
    beside the calibrated speed the plan used (``calibrated``); False when it was not kept (too short, machine
    busy with other work, file not writable)."""
    if not (seconds >= MIN_SECONDS and reference_seconds > 0 and calibrated > 0) or busy_elsewhere(at_once):
        return False
    data = read_json(path)
    entry = data.setdefault(key, {})
    samples = entry.get(method) if isinstance(entry.get(method), list) else []
    samples.append({"speed": reference_seconds / seconds, "calibrated": calibrated,
                    "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    entry[method] = samples[-KEEP:]
    return write_json(path, data)


def _valid(samples: Any) -> list[dict[str, float]]:
    if not isinstance(samples, list):
        return []
    good = []
    for sample in samples:
        try:
            speed, calibrated = float(sample["speed"]), float(sample["calibrated"])
        except (KeyError, TypeError, ValueError):
            continue
        if speed > 0 and calibrated > 0:
            good.append({"speed": speed, "calibrated": calibrated})
    return good


class ObservedSpeeds:
    """The effective speeds kept under one key: :meth:`speed` gives the one to plan a method's cells with."""

    def __init__(self, path: Path, key: str) -> None:
        entry = read_json(path).get(key)
        entry = entry if isinstance(entry, dict) else {}
        self.samples = {m: s for m, s in ((m, _valid(v)) for m, v in entry.items()) if s}

    def __len__(self) -> int:
        return len(self.samples)

    def ratio(self) -> float | None:
        """The typical observed-over-calibrated speed of the methods seen here (None: none seen)."""
        ratios = [statistics.median(s["speed"] / s["calibrated"] for s in samples)
                  for samples in self.samples.values()]
        return statistics.median(ratios) if ratios else None

    def speed(self, method: str, calibrated: float) -> tuple[float, bool]:
        """The speed to divide ``method``'s reference estimates by, and whether it was observed for that method."""
        samples = self.samples.get(method)
        if samples:
            return statistics.median(s["speed"] for s in samples), True
        ratio = self.ratio()
        return (calibrated * ratio if ratio is not None else calibrated), False
