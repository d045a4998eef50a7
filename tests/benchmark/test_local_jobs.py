"""``bench run --executor local --jobs N``: cells side by side in child processes, without Ray. The same rows as one
job, each cell in a child of its own share of the threads, the longest cells first; bad input is one line and exit
status 2. (Ctrl-C and SIGTERM with several jobs: test_cell_timeout.py, beside the one-child case.)
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from sepbench.executors.processes import process_tree
from sepbench.grid import load_grid
from sepbench.runner import run_grid
from tests.conftest import bench_here

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

def _records(run: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (run / "cells").glob("*.json")}


def test_two_jobs_write_the_rows_one_job_writes(tmp_path, write_grid):
    grid = load_grid(str(write_grid({"noise": [0.1], "seeds": [0, 1],
                                     "methods": ["average", {"method": "fcsae", "params": {"hidden": 64}}]})))
    serial, side = tmp_path / "serial", tmp_path / "side"
    share = max(1, (os.cpu_count() or 1) // 2)  # each of two jobs' threads: the serial run gets as many
    before = torch.get_num_threads()
    torch.set_num_threads(share)  # same seed, same threads → the same numbers
    try:
        assert run_grid(grid, out=serial, executor="local", progress_stream=io.StringIO()) == 0
    finally:
        torch.set_num_threads(before)
    stream = io.StringIO()
    assert run_grid(grid, out=side, executor="local", jobs=2, progress_stream=stream) == 0
    assert process_tree(os.getpid()) == []  # both children are gone
    one, two = _records(serial), _records(side)
    assert set(one) == set(two) and len(two) == 6  # fcsae: 2 scenarios × 2 seeds; average: one seed suffices
    for cell_id in one:
        a = pd.read_parquet(serial / "cells" / f"{cell_id}.parquet")
        b = pd.read_parquet(side / "cells" / f"{cell_id}.parquet")
        pd.testing.assert_frame_equal(a[["mixture", "source", "mse", "ssim"]], b[["mixture", "source", "mse", "ssim"]])
    pids = {record["pid"] for record in two.values()}
    assert len(pids) == 2 and os.getpid() not in pids, pids  # two children, neither of them the driver
    assert {record["threads"] for record in two.values()} == {share}
    text = stream.getvalue()
    assert text.count("epoch 1/1") == 4 and "[6/6]" in text  # every epoch and every cell said, once


@pytest.mark.parametrize(("args", "fragment"), [(["--jobs", "0"], "--jobs: expected a whole number ≥ 1, got 0"),
                                                (["--jobs", "2"], "--jobs is for --executor local"),
                                                (["--jobs", "two"], "'two' is not a valid integer")])
def test_bad_jobs_are_one_line_and_exit_2(tmp_path, write_grid, args, fragment):
    result = bench_here("run", "--grid", str(write_grid()), "--out", str(tmp_path / "out"), *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], result.stderr
    assert not (tmp_path / "out").exists()  # nothing started
