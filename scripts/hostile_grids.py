"""Measure each hostile grid of tests/benchmark/test_hostile_grids.py through the real CLI: exit status, first
line of stderr, wall time and peak memory (max RSS of the `bench` process). Prints a Markdown table.

    .venv/bin/python scripts/hostile_grids.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.benchmark.test_hostile_grids import HOSTILE, grid_text, limit_memory  # noqa: E402


def measure(text: str) -> tuple[int, str, float, float]:
    """(exit status, first line of stderr, wall seconds, peak RSS in MiB) of `bench run` on a grid ``text``."""
    with tempfile.TemporaryDirectory() as tmp:
        grid = Path(tmp) / "grid.yaml"
        grid.write_text(text)
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "sepbench.cli", "run", "--grid", str(grid), "--executor",
                                 "local", "--out", str(Path(tmp) / "run")], cwd=tmp, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, preexec_fn=limit_memory)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        first = (proc.stderr.read().strip().splitlines() or [""])[0].replace(str(grid), "grid.yaml")
        proc.stderr.close()
        return os.waitstatus_to_exitcode(status), first, wall, usage.ru_maxrss / 1024


def main() -> None:
    print("| input | exit | first line of stderr | wall s | peak MiB |")
    print("|---|---|---|---|---|")
    cases = {"(floor) an unknown key": grid_text(colour="blue"), **{k: v[0] for k, v in HOSTILE.items()}}
    for case, text in cases.items():
        code, first, wall, peak = measure(text)
        print(f"| {case} | {code} | `{first.replace('|', '/')}` | {wall:.1f} | {peak:.0f} |", flush=True)


if __name__ == "__main__":
    main()
