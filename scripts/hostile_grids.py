"""Measure each hostile grid of tests/benchmark/test_hostile_grids.py through the real CLI: exit status, first
line of stderr, wall time and peak memory (max RSS of the `bench` process, mostly Python and torch's import);
and in this process the validation alone (``load_grid``): milliseconds and peak allocation (tracemalloc).
Prints a Markdown table. The last row runs a valid grid with ``--out`` a user's folder (a commented grid.yaml,
a run.log, a hidden .x.tmp): refused, and the folder checked byte for byte afterwards.

    .venv/bin/python scripts/hostile_grids.py
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.benchmark.test_hostile_grids import HOSTILE, grid_text, limit_memory  # noqa: E402
from tests.benchmark.test_out_dir import USER_GRID, foreign_folder, snapshot  # noqa: E402


def measure(text: str, foreign_out: bool = False) -> tuple[int, str, float, float]:
    """(exit status, first line of stderr, wall seconds, peak RSS in MiB) of `bench run` on a grid ``text``;
    ``foreign_out``: into ``--out .`` of a user's folder, which must be left byte-identical."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = foreign_folder(Path(tmp) / "project") if foreign_out else Path(tmp)
        before = snapshot(folder)
        grid = folder / "grid.yaml"
        grid.write_text(text)
        out = "." if foreign_out else str(folder / "run")
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "sepbench.cli", "run", "--grid", str(grid), "--executor",
                                 "local", "--out", out], cwd=folder, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, preexec_fn=limit_memory)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        first = (proc.stderr.read().strip().splitlines() or [""])[0].replace(str(grid), "grid.yaml")
        proc.stderr.close()
        if foreign_out and snapshot(folder) != before:
            first += " [FOLDER CHANGED]"
        return os.waitstatus_to_exitcode(status), first, wall, usage.ru_maxrss / 1024


def validate(text: str) -> tuple[float, float]:
    """(milliseconds, peak MiB allocated) of ``load_grid`` on a grid ``text``, in this process."""
    from sepbench.errors import UserError
    from sepbench.grid import load_grid

    with tempfile.TemporaryDirectory() as tmp:
        grid = Path(tmp) / "grid.yaml"
        grid.write_text(text)
        tracemalloc.start()
        start = time.perf_counter()
        with contextlib.suppress(UserError):
            load_grid(str(grid))
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return elapsed * 1000, peak / 2**20


def main() -> None:
    print("| input | exit | first line of stderr | wall s | peak RSS MiB | validation ms | validation peak MiB |")
    print("|---|---|---|---|---|---|---|")
    cases = {"(floor) an unknown key": grid_text(colour="blue"), **{k: v[0] for k, v in HOSTILE.items()}}
    for case, text in cases.items():
        code, first, wall, peak = measure(text)
        ms, allocated = validate(text)
        print(f"| {case} | {code} | `{first.replace('|', '/')}` | {wall:.1f} | {peak:.0f} | {ms:.1f} | "
              f"{allocated:.1f} |", flush=True)
    code, first, wall, peak = measure(USER_GRID, foreign_out=True)
    print(f"| `--out .` in a user's folder (left byte-identical) | {code} | `{first}` | {wall:.1f} | {peak:.0f} | "
          "– | – |", flush=True)


if __name__ == "__main__":
    main()
