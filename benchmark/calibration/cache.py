"""This machine's measured speed, cached in the data dir per hardware key (CPU model, cores, torch version):
measured once, reused by every run, measured again when the hardware or torch changes."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sepbench.files import atomic_write

CACHE_NAME = "calibration-v1.json"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what the platform says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware_key() -> str:
    """What a calibration is valid for: the CPU model, the number of cores, torch's version."""
    return f"{cpu_model()} | {os.cpu_count()} cores | torch {torch.__version__}"


def read_json(path: Path) -> dict[str, Any]:
    """A cache file's entries; an absent, unreadable or damaged file reads as none."""
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_json(path: Path, entries: dict[str, Any]) -> bool:
    """Replace a cache file's entries atomically; False when it cannot be written (it only costs a measurement)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(entries, indent=1, sort_keys=True).encode())
    except OSError:
        return False
    return True


def _quieter_now(entry: dict[str, Any]) -> bool:
    """A measurement taken while other work kept the cores busy is provisional: taken again once the machine is
    clearly quieter (its 1-minute load under 70 % of what it was then)."""
    try:
        then = float(entry["load"][0])
    except (KeyError, IndexError, TypeError, ValueError):
        return False
    return then > 0.5 * (os.cpu_count() or 1) and os.getloadavg()[0] < 0.7 * then


def cached_measurement(path: Path, key: str, measure: Callable[[], dict[str, Any]],
                       redo: bool = False) -> tuple[dict[str, Any], bool]:
    """The entry for ``key`` in the cache file ``path``, measured (and written) when absent or ``redo``;
    returns it and whether it was measured now. A cache that cannot be written only costs the next run a
    measurement."""
    entries = read_json(path)
    entry = entries.get(key)
    if isinstance(entry, dict) and not redo and not _quieter_now(entry):
        return entry, False
    entry = {**measure(), "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "load": list(os.getloadavg())}
    entries[key] = entry
    write_json(path, entries)
    return entry, True
