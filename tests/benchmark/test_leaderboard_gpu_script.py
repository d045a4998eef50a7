"""scripts/leaderboard-gpu.sh (a track on a lent GPU machine without Ray or an installation) runs here on the CPU:
sepbench from the checkout, cells side by side with --jobs, stopped at its time limit with finished cells packed."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.benchmark.test_ray_executor import DUAL, assert_nothing_left, gated, marker

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
REPO = Path(__file__).resolve().parents[2]


def test_the_script_stops_at_its_limit_and_brings_back_the_finished_cells(tmp_path, write_grid):
    entry, plugin_env, hold = gated(tmp_path)  # seed 0's cell finishes, seeds 1 and 2 are held in fit
    grid = write_grid({"scenarios": DUAL, "noise": [0.1], "seeds": [0, 1, 2], "methods": [entry],
                       "plugins": ["gated_demo"]})
    env = {**os.environ, **marker(), **plugin_env, "PYTHON": sys.executable, "GRID": str(grid),
           "RUN_DIR": str(tmp_path / "run"), "JOBS": "2", "LIMIT": "40"}
    done = subprocess.run(["bash", str(REPO / "scripts" / "leaderboard-gpu.sh"), str(tmp_path / "back")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 124, done.stdout[-3000:] + done.stderr[-3000:]  # stopped by its limit
    assert "terminated" in done.stdout and "Traceback" not in done.stdout + done.stderr, done.stdout[-3000:]
    assert done.stdout.strip().endswith(f"packed 1 finished cells into {tmp_path / 'back' / 'run.tar.gz'} "
                                        "(exit 124)")
    with tarfile.open(tmp_path / "back" / "run.tar.gz") as tar:
        names = tar.getnames()
    assert "./manifest.json" in names and sum(n.endswith(".parquet") for n in names) == 1
    assert not any("checkpoints" in n or n.endswith(".lock") for n in names)
    assert_nothing_left(env)  # the children held in fit were stopped by PID
    hold.unlink()
