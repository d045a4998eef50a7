"""How fast this machine trains, relative to the machine where the methods' ``cpu_mixtures_per_s`` were measured.

The plan's CPU estimates are divided by this speed. It is measured once per hardware key (a second or two of a
reference workload, :mod:`sepbench.calibration.reference`), cached in the data dir, and measured again when the
CPU, the core count or torch's version changes. ``$SEPBENCH_CALIBRATION`` set to a number fixes the speed without
measuring (tests, CI); set to ``redo`` it measures again (e.g. on a machine that was busy the first time).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from sepbench.calibration.cache import CACHE_NAME, cached_measurement, hardware_key
from sepbench.calibration.observed import OBSERVED_NAME, ObservedSpeeds
from sepbench.calibration.reference import REFERENCE_RATE, concurrent_rate
from sepbench.errors import UserError

ENV = "SEPBENCH_CALIBRATION"
ROUNDS, ROUND_SECONDS = 3, 0.6  # the best of three short rounds: what the machine does when nothing else runs

__all__ = ["CACHE_NAME", "ENV", "OBSERVED_NAME", "REFERENCE_RATE", "ObservedSpeeds", "calibration_path",
           "fixed_speed", "hardware_key", "machine_speed", "observed_path", "speed_key"]


def calibration_path(data_dir: str | Path | None = None) -> Path:
    from sepbench.datasets.mnist import default_data_dir

    return (Path(data_dir).expanduser() if data_dir is not None else default_data_dir()) / CACHE_NAME


def observed_path(data_dir: str | Path | None = None) -> Path:
    """Where finished cells leave their effective speeds (:mod:`sepbench.calibration.observed`)."""
    return calibration_path(data_dir).with_name(OBSERVED_NAME)


def speed_key(parallel: int = 1) -> str:
    """The key a speed is cached under: the hardware, and how many cells share it."""
    parallel = max(1, int(parallel))
    return hardware_key() + (f" | {parallel} cells at a time" if parallel > 1 else "")


def fixed_speed() -> bool:
    """Whether ``$SEPBENCH_CALIBRATION`` fixes the speed (then nothing is measured, observed or recorded)."""
    fixed = os.environ.get(ENV, "").strip()
    return bool(fixed) and fixed != "redo"


def machine_speed(data_dir: str | Path | None = None, say: Callable[[str], None] | None = None,
                  redo: bool = False, parallel: int = 1) -> float:
    """This machine's training speed over the reference machine's (2.0: estimates take half as long) for a cell
    among ``parallel`` cells that run at once; measured on first use (``say`` announces it) and cached per
    hardware key and ``parallel``."""
    fixed = os.environ.get(ENV, "").strip()
    if fixed and fixed != "redo":
        try:
            speed = float(fixed)
        except ValueError:
            speed = 0.0
        if not speed > 0:
            raise UserError(f"${ENV}={fixed!r}: expected a speed > 0 (e.g. 1.0), or 'redo' to measure again")
        return speed
    parallel = max(1, int(parallel))
    path, key = calibration_path(data_dir), speed_key(parallel)

    def measure() -> dict[str, float]:
        if say is not None:
            seconds = ROUNDS * ROUND_SECONDS + (0.5 if parallel == 1 else 4)  # processes start and import torch
            at_once = "" if parallel == 1 else f", {parallel} cells at a time"
            say(f"  measuring this machine's training speed once (about {seconds:.0f} s{at_once}; "
                f"cached in {path} for {key})")
        rate = concurrent_rate(ROUND_SECONDS, ROUNDS, parallel)
        return {"reference_rate": rate, "speed": rate / REFERENCE_RATE}

    entry, _ = cached_measurement(path, key, measure, redo=redo or fixed == "redo")
    return float(entry["speed"])
