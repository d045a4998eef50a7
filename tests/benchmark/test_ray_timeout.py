"""Time limits and worker crashes under the Ray executor, on a real private Ray: a cell hung in Python or in native
code is cancelled at its limit (its worker killed, not retried) while the others finish, and a rerun with a larger
limit completes it; a crashed worker's last log lines are in its cell's record after the private Ray is gone.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from tests.benchmark.test_cell_timeout import attempts, metas, stall, stall_plugin
from tests.benchmark.test_ray_executor import DUAL, assert_nothing_left, marker, mtimes
from tests.conftest import bench

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def test_ray_ends_hung_cells_at_their_limit_keeps_crash_logs_and_a_rerun_finishes(tmp_path, write_grid):
    plugin_env, hold = stall_plugin(tmp_path)
    short_tmp = Path(tempfile.mkdtemp(prefix="sbt-", dir="/tmp"))  # Ray's socket paths need a short TMPDIR
    env = {**marker(), **plugin_env, "TMPDIR": str(short_tmp)}
    out = tmp_path / "run"
    try:
        methods = ["average", stall(hold, "sleep", timeout=5), stall(hold, "native", timeout=5), stall(hold, "exit")]
        grid = write_grid({"scenarios": DUAL, "noise": [0.1], "methods": methods, "plugins": ["stall_demo"]})
        first = bench("run", "--grid", str(grid), "--out", str(out), cwd=tmp_path, env=env)
        assert first.returncode == 1, first.stderr
        assert_nothing_left(env)
        assert list(short_tmp.glob("sepbench-ray-*")) == []  # the private Ray's temp dir, and its logs, are gone
        found = metas(out)
        assert found["average"]["status"] == "done", first.stderr
        for label in ("stall-sleep", "stall-native"):
            assert found[label]["status"] == "failed"
            assert found[label]["error"].startswith("timed out after 5 s"), found[label]
            assert found[label]["seconds"] >= 5
        # a cancelled cell is not retried; a crashed worker's cell is (3 times), then fails with the worker's log
        tries = attempts(hold)
        assert tries.count("sleep") == 1 and tries.count("native") == 1 and tries.count("exit") == 4, tries
        crashed = found["stall-exit"]
        assert crashed["status"] == "failed" and crashed["error"].startswith("WorkerCrashedError"), crashed
        assert "python-core-worker" not in crashed["error"] and "worker_log" in crashed["error"]
        assert "stall exit: about to exit" in crashed["worker_log"], crashed["worker_log"]
        assert "timed out after 5 s" in first.stderr

        kept = mtimes(out)
        hold.unlink()
        methods = ["average", stall(hold, "sleep", timeout=300), stall(hold, "native", timeout=300),
                   stall(hold, "exit")]
        grid = write_grid({"scenarios": DUAL, "noise": [0.1], "methods": methods, "plugins": ["stall_demo"]})
        second = bench("run", "--grid", str(grid), "--out", str(out), "--cell-timeout", "300", cwd=tmp_path,
                       env=env)
        assert second.returncode == 0, second.stderr
        assert "3 to run" in second.stderr
        assert {m["status"] for m in metas(out).values()} == {"done"}
        assert kept.items() <= mtimes(out).items() and len(mtimes(out)) == 4
        assert_nothing_left(env)
    finally:
        shutil.rmtree(short_tmp, ignore_errors=True)
