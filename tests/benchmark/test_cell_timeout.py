"""A cell's time limit (``bench run --cell-timeout``, a grid entry's ``timeout``) under the local executor: a cell
hung in Python or in native code is ended and recorded as failed, the others finish, a rerun with a larger limit
completes it; limited cells run in a child process whose results equal the in-process ones; Ctrl-C and SIGTERM
still end the run (exit 130 / 143) with finished cells kept and no process left.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sepbench.errors import GridError
from sepbench.executors.processes import process_tree
from sepbench.grid import load_grid, parse_grid
from sepbench.plan import plan_grid
from sepbench.runner import run_grid
from tests.benchmark.test_ray_executor import (
    DUAL,
    assert_nothing_left,
    explode_method,  # noqa: F401 (a fixture)
    gated,
    marker,
    mtimes,
    popen_bench,
    rows,
    wait_for,
)
from tests.conftest import TINY_GRID, bench, bench_here

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

STALL_METHOD = '''
"""A method that hangs in fit while its hold file exists: in Python (``sleep``), in native code holding the GIL
(``native``: libc's sleep through ctypes.PyDLL, which no Python-level timer in the process can interrupt), or that
kills its own process (``exit``). Each fit appends its label to ``<hold>.attempts``."""
import ctypes
import os
import time
from pathlib import Path

from sepbench import Method, Param, Requirements, register_method, upsample


@register_method("stall")
class Stall(Method):
    requires = Requirements(needs_training=True)
    parameters = {"hold": Param("", str), "how": Param("sleep", str), "tag": Param("", str)}

    def fit(self, data, ctx):
        hold = Path(self.params["hold"])
        with open(f"{hold}.attempts", "a") as log:
            log.write(self.params["tag"] + "\\n")
        if hold.exists():
            print(f"stall {self.params['tag']}: about to {self.params['how']}", flush=True)
            if self.params["how"] == "sleep":
                time.sleep(600)
            elif self.params["how"] == "native":
                ctypes.PyDLL(None).sleep(600)
            elif self.params["how"] == "exit":
                os._exit(7)
        return super().fit(data, ctx)

    def separate(self, y):
        half = upsample(y.sum(dim=1, keepdim=True), self.task.downsample) / float(self.task.weight_matrix().sum())
        return half.expand(-1, self.task.n_sources, -1, -1).contiguous()
'''


def stall_plugin(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The ``stall`` plugin: the environment that makes it importable, and its hold file (delete it: no hang)."""
    plugin = tmp_path / "stall_plugin"
    plugin.mkdir()
    (plugin / "stall_demo.py").write_text(STALL_METHOD)
    hold = tmp_path / "hold"
    hold.write_text("")
    return {"PYTHONPATH": str(plugin)}, hold


def stall(hold: Path, how: str, **entry) -> dict:
    return {"method": "stall", "label": f"stall-{how}", "params": {"hold": str(hold), "how": how, "tag": how},
            **entry}


def metas(run: Path) -> dict[str, dict]:
    """Each cell's record, by label."""
    found = {}
    for path in (run / "cells").glob("*.json"):
        meta = json.loads(path.read_text())
        found[meta["config"]["label"]] = meta
    return found


def attempts(hold: Path) -> list[str]:
    return Path(f"{hold}.attempts").read_text().split()


def test_hung_cells_are_ended_at_their_limit_and_a_rerun_with_a_larger_limit_finishes_them(tmp_path, write_grid):
    plugin_env, hold = stall_plugin(tmp_path)
    # limits of seconds for the hanging cells; the others' first cell in a fresh process takes a few seconds
    methods = [{"method": "average", "timeout": 120}, stall(hold, "sleep"), stall(hold, "native", timeout=4),
               stall(hold, "exit", timeout=120)]
    grid = write_grid({"scenarios": DUAL, "noise": [0.1], "methods": methods, "plugins": ["stall_demo"]})
    out = tmp_path / "run"
    env = {**marker(), **plugin_env}
    first = bench("run", "--grid", str(grid), "--out", str(out), "--executor", "local", "--cell-timeout", "5",
                  cwd=tmp_path, env=env)
    assert first.returncode == 1, first.stderr
    assert_nothing_left(env)  # the killed children and their replacements are gone
    found = metas(out)
    assert found["average"]["status"] == "done"
    # the CLI's limit for the entry without one, the entry's own limit where it has one
    assert found["stall-sleep"]["status"] == "failed"
    assert found["stall-sleep"]["error"].startswith("timed out after 5 s"), found["stall-sleep"]
    assert found["stall-sleep"]["timeout"] == 5 and found["stall-sleep"]["seconds"] >= 5
    assert found["stall-native"]["error"].startswith("timed out after 4 s"), found["stall-native"]
    assert found["stall-native"]["timeout"] == 4 and found["stall-native"]["seconds"] >= 4
    # a cell whose process dies is a failed cell too, and the next cell gets a fresh process
    assert found["stall-exit"]["status"] == "failed"
    assert "it exited with status 7" in found["stall-exit"]["error"], found["stall-exit"]
    assert sorted(attempts(hold)) == ["exit", "native", "sleep"]
    assert "timed out after 5 s" in first.stderr and "3 cell(s) failed" in first.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cell_timeout"] == 5

    kept = mtimes(out)
    hold.unlink()  # the methods no longer hang
    again = write_grid({"scenarios": DUAL, "noise": [0.1], "plugins": ["stall_demo"],
                        "methods": ["average", stall(hold, "sleep"), stall(hold, "native", timeout=120),
                                    stall(hold, "exit", timeout=120)]})
    second = bench("run", "--grid", str(again), "--out", str(out), "--executor", "local", "--cell-timeout", "120",
                   cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    assert "3 to run" in second.stderr  # a limit is not part of a cell's id: the same cells, the failed ones rerun
    assert {m["status"] for m in metas(out).values()} == {"done"}
    assert kept.items() <= mtimes(out).items() and len(mtimes(out)) == 4
    assert_nothing_left(env)


def test_limited_cells_return_the_same_rows_and_examples_as_in_process_cells(tmp_path, write_grid):
    grid = write_grid({"noise": [0.1], "scenarios": DUAL,
                       "methods": ["average", {"method": "fcsae", "params": {"hidden": 64}}]})
    env = {**marker(), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    # the driver in this process (one torch thread, as the child is told); the limited cells in a real child
    plain = bench_here("run", "--grid", str(grid), "--out", str(tmp_path / "plain"), "--executor", "local",
                       cwd=tmp_path, env=env)
    assert plain.returncode == 0, plain.stderr
    limited = bench_here("run", "--grid", str(grid), "--out", str(tmp_path / "limited"), "--executor", "local",
                         "--cell-timeout", "300", cwd=tmp_path, env=env)
    assert limited.returncode == 0, limited.stderr
    assert "epoch 1/1" in limited.stderr  # the child's epochs reach the driver's progress
    a, b = rows(tmp_path / "plain"), rows(tmp_path / "limited")
    assert len(a) == 2 * 40 * 2
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    for path in (tmp_path / "plain" / "examples").glob("*.npz"):
        with np.load(path) as x, np.load(tmp_path / "limited" / "examples" / path.name) as y:
            assert sorted(x.files) == sorted(y.files)
            for key in x.files:
                np.testing.assert_array_equal(x[key], y[key])
    assert {m["n_parameters"] for m in metas(tmp_path / "limited").values()} == \
        {m["n_parameters"] for m in metas(tmp_path / "plain").values()}
    assert_nothing_left(env)


def test_a_method_registered_in_the_driver_by_hand_runs_in_the_child(tmp_path, write_grid, request):
    flag = request.getfixturevalue("explode_method")  # the method and the module Ray workers import it from
    grid = load_grid(str(write_grid({"scenarios": DUAL, "noise": [0.1], "methods": ["explode"]})))
    out = tmp_path / "run"
    assert run_grid(grid, out=out, executor="local", cell_timeout=120, progress_stream=io.StringIO()) == 1
    (meta,) = metas(out).values()
    assert "RuntimeError: boom: exploded in fit" in meta["error"], meta  # the child found it, ran it, it raised
    assert process_tree(os.getpid()) == []  # the child is gone
    flag.unlink()  # the method is fixed
    assert run_grid(grid, out=out, executor="local", cell_timeout=120, progress_stream=io.StringIO()) == 0
    assert process_tree(os.getpid()) == []


@pytest.mark.parametrize("children", [["--cell-timeout", "600"], ["--jobs", "2"]], ids=["limited", "jobs-2"])
@pytest.mark.parametrize(("signum", "status", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                        (signal.SIGTERM, 143, "terminated")])
def test_a_signal_ends_a_local_run_in_children_keeps_finished_cells_and_stops_them(tmp_path, write_grid, signum,
                                                                                    status, word, children):
    """A limited cell runs in one child process, ``--jobs 2`` in two side by side: either way a signal ends the
    run with its status, the finished cell kept and every child stopped."""
    entry, plugin_env, hold = gated(tmp_path)  # seed 0's cell finishes, the others are held in fit
    grid = write_grid({"scenarios": DUAL, "noise": [0.1], "seeds": [0, 1, 2], "methods": [entry],
                       "plugins": ["gated_demo"]})
    out = tmp_path / "run"
    env = {**marker(), **plugin_env}
    log = tmp_path / "run.log"
    proc = popen_bench("run", "--grid", str(grid), "--out", str(out), "--executor", "local", *children,
                       cwd=tmp_path, env=env, log=log)
    try:
        wait_for(lambda: list((out / "cells").glob("*.parquet")) if (out / "cells").exists() else [], 180,
                 "a finished cell", proc)
        proc.send_signal(signum)
        assert proc.wait(60) == status, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_nothing_left(env)  # the children held in fit were stopped by PID
    text = log.read_text()
    assert word in text and "Traceback" not in text, text
    assert len(mtimes(out)) == 1, text
    hold.unlink()


def test_a_limit_is_not_part_of_a_cells_id_and_an_entrys_own_limit_wins():
    raw = {**TINY_GRID, "methods": ["average", {"method": "ica", "timeout": 7}]}
    plain = plan_grid(parse_grid({**TINY_GRID, "methods": ["average", "ica"]})).cells
    limited = plan_grid(parse_grid(raw), cell_timeout=30).cells
    assert [c.id for c in plain] == [c.id for c in limited]
    assert {c.method: c.timeout for c in limited} == {"average": 30, "ica": 7}
    assert {c.timeout for c in plan_grid(parse_grid(raw)).cells} == {None, 7}
    assert parse_grid(raw).to_dict()["methods"][1]["timeout"] == 7  # the resolved grid keeps it
    assert replace(plain[0], timeout=1.5).id == plain[0].id


@pytest.mark.parametrize("value", [0, -1, "soon", True, float("inf")])
def test_a_bad_timeout_in_the_grid_is_an_error_naming_the_key(value):
    with pytest.raises(GridError, match=r"methods\[0\]\.timeout: expected a positive number of seconds"):
        parse_grid({**TINY_GRID, "methods": [{"method": "average", "timeout": value}]})


@pytest.mark.parametrize(("value", "fragment"), [("0", "--cell-timeout: expected a positive number of seconds"),
                                                 ("nan", "--cell-timeout: expected a positive number of seconds"),
                                                 ("soon", "'soon' is not a valid float")])
def test_a_bad_cell_timeout_is_one_line_and_exit_2(tmp_path, write_grid, value, fragment):
    out = tmp_path / "out"
    result = bench_here("run", "--grid", str(write_grid()), "--out", str(out), "--cell-timeout", value,
                        cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], result.stderr
    assert not out.exists()
