"""Benchmark: the run's predicted duration against its wall time, on the real command line.

Runs ``bench run --grid GRID`` into a fresh directory, timestamps every progress line, and prints the plan's
prediction (the "expected about …" line: the machine's calibrated speed, the digit classifier's training if it
happens, Ray's start) beside the wall time from that line to the end, then, per method label, the plan's
estimate of its cells against what they took. Meant for a quiet machine (other work makes every cell slower
than its estimate); ``--recalibrate`` measures the machine's speed again first.

    .venv/bin/python -m sepbench.perf.eta_check [--grid quick] [--executor ray] [--data-dir DIR] [--recalibrate]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from sepbench.grid import load_grid
from sepbench.perf.common import load
from sepbench.plan import plan_grid
from sepbench.progress import format_duration

EXPECTED = re.compile(r"expected about (?:(\d+)h(\d+)m|(\d+)m(\d+)s)")


def parse_duration(line: str) -> float | None:
    match = EXPECTED.search(line)
    if not match:
        return None
    h, m, m2, s = (int(g) if g else 0 for g in match.groups())
    return h * 3600 + m * 60 if match.group(1) else m2 * 60 + s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="quick")
    parser.add_argument("--executor", default="ray", choices=("ray", "local"))
    parser.add_argument("--data-dir", help="the data dir (default: $BENCH_DATA or ~/.cache/sepbench)")
    parser.add_argument("--recalibrate", action="store_true", help="measure the machine's speed again first")
    args = parser.parse_args()
    env = dict(os.environ)
    env.pop("SEPBENCH_CALIBRATION", None)
    if args.recalibrate:
        env["SEPBENCH_CALIBRATION"] = "redo"
    out = Path(tempfile.mkdtemp(prefix="eta-check-")) / "run"
    command = [sys.executable, "-m", "sepbench.cli", "run", "--grid", args.grid, "--out", str(out),
               "--executor", args.executor] + (["--data-dir", args.data_dir] if args.data_dir else [])
    at_once = (os.cpu_count() or 1) if args.executor == "ray" else 1
    observed = _observed(args.data_dir, at_once)  # as the plan will read them, before this run adds its own
    print(f"{load()} before; {' '.join(command[2:])}", flush=True)
    started = time.monotonic()
    predicted, said_at = None, None
    with subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env) as proc:
        for line in proc.stderr:
            now = time.monotonic() - started
            print(f"{now:7.1f}s {line.rstrip()}", flush=True)
            if predicted is None and (seconds := parse_duration(line)) is not None:
                predicted, said_at = seconds, now
    wall = time.monotonic() - started
    print(f"\nexit {proc.returncode}; {load()} after")
    if predicted is None:
        print("no prediction printed (a GPU run, or nothing to run)")
        return
    actual = wall - said_at
    print(f"predicted {format_duration(predicted)} ({predicted:.0f} s); actual {format_duration(actual)} "
          f"({actual:.0f} s) from the prediction to the end: {100 * (actual - predicted) / predicted:+.0f} %; "
          f"whole command {wall:.0f} s")
    estimates, took = defaultdict(float), defaultdict(float)
    plan = {c.id: c for c in plan_grid(load_grid(args.grid)).cells}
    speed = _speed(args.data_dir, at_once)
    for meta in (json.loads(p.read_text()) for p in (out / "cells").glob("*.json")):
        cell = plan.get(meta["id"])
        if cell is not None:
            estimates[cell.label] += cell.expected_seconds / observed.speed(cell.method, speed)[0]
            took[cell.label] += float(meta.get("seconds") or 0.0)
    seen = ", ".join(sorted(observed.samples)) or "none"
    print(f"machine speed {speed:.2f} (methods timed by earlier cells here: {seen}); cell-seconds per label "
          "(estimate → actual):")
    for label in estimates:
        print(f"  {label:18} {estimates[label]:7.1f} → {took[label]:7.1f}  ({took[label] / estimates[label]:.2f}×)")


def _speed(data_dir: str | None, at_once: int) -> float:
    """The speed the run used: the cached calibration for this hardware and cells at a time (read, never measured
    again here)."""
    from sepbench.calibration import calibration_path, speed_key

    entry = json.loads(calibration_path(data_dir).read_text()).get(speed_key(at_once)) or {}
    return float(entry.get("speed", 1.0))


def _observed(data_dir: str | None, at_once: int):
    from sepbench.calibration import ObservedSpeeds, observed_path, speed_key

    return ObservedSpeeds(observed_path(data_dir), speed_key(at_once))


if __name__ == "__main__":
    main()
