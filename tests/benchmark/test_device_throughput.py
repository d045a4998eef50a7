"""The device throughput benchmark runs end to end on the CPU (on a GPU it is the same code with CUDA syncs)."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import torch

from sepbench.perf.device_throughput import timed_steps


def test_timed_steps_runs_at_least_min_steps_and_counts_them() -> None:
    calls = []
    steps, elapsed = timed_steps(calls.append, itertools.repeat(None), torch.device("cpu"), 0.0, min_steps=3)
    assert steps == len(calls) == 3 and elapsed >= 0


def test_batch_sizes_and_packed_cells_on_the_cpu() -> None:
    # a process of its own: multiprocessing's spawn leaves a resource tracker beside its parent until it exits
    done = subprocess.run(
        [sys.executable, "-m", "sepbench.perf.device_throughput", "--device", "cpu", "--methods", "fcsae",
         "--batches", "32,64", "--seconds", "0.2", "--max-cells", "2", "--setup-seconds", "10", "--threads", "1"],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    row = next(line for line in out.splitlines() if line.strip().startswith("fcsae") and "|" in line)
    pairs = re.findall(r"([\d,]+) · +([\d,]+)", row)
    assert len(pairs) == 2, row  # one (training, separation) pair per batch size
    assert all(float(v.replace(",", "")) > 0 for pair in pairs for v in pair)
    totals = [float(t.replace(",", "")) for t in re.findall(r"fcsae +k=\d: total +([\d,]+) mixtures/s", out)]
    assert len(totals) == 2 and all(t > 0 for t in totals), out
    assert re.search(r"fcsae +→ (\d cell\(s\) per device|still rising at 2 cells)", out), out
