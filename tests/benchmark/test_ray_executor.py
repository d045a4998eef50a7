"""The Ray executor on a real Ray on this machine: same rows as local, node loss, failing methods, Ctrl-C.

Every Ray process a test starts listens on 127.0.0.1 only and is stopped by PID before the test ends; runs are
tagged with an environment marker so that what is left of them can be found (and must be nothing).
"""

from __future__ import annotations

import importlib
import io
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pandas as pd
import psutil
import pytest

from sepbench.api import _ORIGINS, _REGISTRY, Resources
from sepbench.executors.processes import process_tree, wait_gone
from sepbench.executors.ray_scheduler import Capacity
from sepbench.grid import load_grid, parse_grid
from sepbench.plan import plan_grid
from sepbench.runner import run_grid
from tests.conftest import TINY_GRID, bench, bench_here
from tests.raycluster import RayNode, auth_env, free_port, processes_with_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

DUAL = {"dual": {"weights": [[0.7, 0.3], [0.3, 0.7]], "downsample": 2}}
LOOPBACK_IPS = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}

GATED_METHOD = '''
"""A method whose cells (but the ``free`` seed's) wait in ``fit`` while the hold file exists: tests interrupt a
run at a known point whatever the machine's speed (a fast machine finishes short cells before a signal comes)."""
import time
from pathlib import Path

from sepbench import Method, Param, Requirements, register_method, upsample


@register_method("gated")
class Gated(Method):
    requires = Requirements(needs_training=True)  # so that every seed is a cell of its own
    parameters = {"hold": Param("", str), "free": Param(0, int)}

    def fit(self, data, ctx):
        hold, started = Path(self.params["hold"]), time.monotonic()
        while ctx.seed != self.params["free"] and hold.exists() and time.monotonic() < started + 600:
            time.sleep(0.05)
        return super().fit(data, ctx)

    def separate(self, y):
        half = upsample(y.sum(dim=1, keepdim=True), self.task.downsample) / float(self.task.weight_matrix().sum())
        return half.expand(-1, self.task.n_sources, -1, -1).contiguous()
'''


def gated(tmp_path: Path, free: int = 0) -> tuple[dict, dict[str, str], Path]:
    """The ``gated`` method as a plugin: its grid entry (cells of seed ``free`` are not held), the environment
    that lets Ray workers import it, and the hold file (delete it to let the held cells finish)."""
    plugin = tmp_path / "gated_plugin"
    plugin.mkdir()
    (plugin / "gated_demo.py").write_text(GATED_METHOD)
    hold = tmp_path / "hold"
    hold.write_text("")
    entry = {"method": "gated", "params": {"hold": str(hold), "free": free}}
    return entry, {"PYTHONPATH": str(plugin)}, hold


def marker() -> dict[str, str]:
    return {"SEPBENCH_TEST_RUN": uuid.uuid4().hex}


def _marker_processes(env: dict[str, str]) -> list[psutil.Process]:
    return processes_with_env("SEPBENCH_TEST_RUN", env["SEPBENCH_TEST_RUN"])


def assert_nothing_left(env: dict[str, str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while wait_gone(_marker_processes(env), 0) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = wait_gone(_marker_processes(env), 0)
    assert not left, f"processes of the run are still there: {[(p.pid, _cmdline(p)) for p in left]}"


def _cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())[:120]
    except psutil.Error:
        return "?"


def rows(run: Path) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in sorted((run / "cells").glob("*.parquet"))]
    return pd.concat(frames).sort_values(["cell", "mixture", "source"]).reset_index(drop=True)


def mtimes(run: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (run / "cells").glob("*.parquet")}


def listening_ips(processes: list[psutil.Process]) -> set[str]:
    """The local addresses of the TCP sockets that ``processes`` listen on."""
    found = set()
    for process in processes:
        try:
            connections = process.net_connections(kind="tcp")
        except psutil.Error:
            continue
        found |= {c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN}
    return found


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def popen_bench(*args: str, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "sepbench.cli", *args], cwd=cwd, env={**os.environ, **env},
                                stdout=out, stderr=subprocess.STDOUT)


def test_private_ray_writes_the_same_rows_as_local(tmp_path, write_grid):
    grid = write_grid({"noise": [0.1], "methods": ["average", {"method": "fcsae", "params": {"hidden": 64}}]})
    # one torch thread in both, as a one-CPU Ray task has: same seed, same threads → the same numbers
    local = bench_here("run", "--grid", str(grid), "--out", str(tmp_path / "local"), "--executor", "local",
                       cwd=tmp_path, env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    assert local.returncode == 0, local.stderr
    env = marker()
    ray_run = bench("run", "--grid", str(grid), "--out", str(tmp_path / "ray"), cwd=tmp_path, env=env)  # default
    assert ray_run.returncode == 0, ray_run.stderr
    assert_nothing_left(env)
    assert "private Ray" in ray_run.stderr and "no GPU: GPU cells run on CPUs" in ray_run.stderr
    assert "[4/4]" in ray_run.stderr and "MSE" in ray_run.stderr

    a, b = rows(tmp_path / "local"), rows(tmp_path / "ray")
    assert len(a) == 4 * 40 * 2
    pd.testing.assert_frame_equal(a, b, check_exact=True)  # every row, every metric, bit for bit
    metas = [pd.read_json(p, typ="series") for p in (tmp_path / "ray" / "cells").glob("*.json")]
    assert {m["status"] for m in metas} == {"done"} and {m["threads"] for m in metas} == {1}
    assert {m["device"] for m in metas} == {"cpu"}


def test_worker_node_killed_mid_run_every_cell_still_finishes(tmp_path, write_grid):
    entry, plugin_env, hold = gated(tmp_path, free=-1)  # every cell waits until the worker is gone
    grid = write_grid({"scenarios": DUAL, "noise": [0.1], "seeds": [0, 1, 2], "methods": [entry],
                       "plugins": ["gated_demo"]})
    env = auth_env()
    head = RayNode(env, num_cpus=1, tag="h")
    worker = None
    proc = None
    try:
        worker = RayNode(env, num_cpus=1, address=head.address, tag="w")
        head.wait_started()
        worker.wait_started()
        assert listening_ips(head.processes() + worker.processes()) <= LOOPBACK_IPS
        run_env = {**env, **marker(), **plugin_env}
        proc = popen_bench("run", "--grid", str(grid), "--out", str(tmp_path / "run"), "--address", head.address,
                           cwd=tmp_path, env=run_env, log=tmp_path / "bench.log")

        def cell_on_worker() -> str | None:
            for process in process_tree(worker.proc.pid):
                try:
                    title = process.cmdline()[0]
                except (psutil.Error, IndexError):
                    continue
                if title.startswith("ray::cell-"):
                    return title.removeprefix("ray::cell-").split()[0]
            return None

        victim = wait_for(cell_on_worker, 120, "a cell running on the worker node", proc)
        worker.crash()  # the victim is held in fit: it cannot have finished
        hold.unlink()
        assert proc.wait(240) == 0, (tmp_path / "bench.log").read_text()
        log = (tmp_path / "bench.log").read_text()
        metas = {p.stem: pd.read_json(p, typ="series") for p in (tmp_path / "run" / "cells").glob("*.json")}
        assert len(metas) == 3 and {m["status"] for m in metas.values()} == {"done"}, log
        # the victim started on the worker node and finished on the head, like every other cell
        assert metas[victim]["status"] == "done" and len({m["ray_node"] for m in metas.values()}) == 1, log
        assert len(rows(tmp_path / "run")) == 3 * 40 * 2
        assert_nothing_left(run_env)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        processes = head.processes() + (worker.processes() if worker else [])
        if worker is not None:
            worker.stop()
        head.stop()
        assert not wait_gone(processes, 10), "cluster processes left behind"


def test_no_cluster_at_the_address_is_one_line_and_exit_2(tmp_path, write_grid):
    out = tmp_path / "out"
    result = bench("run", "--grid", str(write_grid()), "--out", str(out), cwd=tmp_path,
                   env={"RAY_ADDRESS": f"127.0.0.1:{free_port()}"})  # RAY_ADDRESS works as --address does
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: cannot reach the Ray cluster at 127.0.0.1:")
    assert "Traceback" not in result.stderr and not (out / "manifest.json").exists()


FAILING_METHOD = '''
"""A method that blows up in fit while the flag file beside it exists."""
from pathlib import Path

from sepbench.api import Method, register_method
from sepbench.datasets.forward import upsample

FLAG = Path(__file__).with_name("explode.flag")


@register_method("explode")
class Explode(Method):
    def fit(self, data, ctx):
        if FLAG.exists():
            raise RuntimeError("boom: exploded in fit")
        return super().fit(data, ctx)

    def separate(self, y):
        half = upsample(y.sum(dim=1, keepdim=True), self.task.downsample) / float(self.task.weight_matrix().sum())
        return half.expand(-1, self.task.n_sources, -1, -1).contiguous()
'''


@pytest.fixture
def explode_method(tmp_path, monkeypatch):
    """The ``explode`` method, registered in this process from a module that Ray workers must import too."""
    plugin_dir = tmp_path / "plugin"
    plugin_dir.mkdir()
    (plugin_dir / "failing_method.py").write_text(FAILING_METHOD)
    flag = plugin_dir / "explode.flag"
    flag.write_text("on")
    monkeypatch.syspath_prepend(str(plugin_dir))
    importlib.import_module("failing_method")
    yield flag
    _REGISTRY.pop("explode", None)
    _ORIGINS.pop("explode", None)
    sys.modules.pop("failing_method", None)


def test_a_method_that_raises_fails_its_cell_only_and_the_rerun_runs_just_that_cell(tmp_path, write_grid,
                                                                                   explode_method):
    """Under Ray a cell that raises fails alone and the rerun runs just that cell; the epochs of a running cell are
    posted to the driver (a Ray queue) and printed on the run's own progress stream — not only in the worker's
    log — before the cell's own line (both on one private Ray: its start is the expensive part)."""
    fcsae = {"method": "fcsae", "params": {"hidden": 32}, "train": {"epochs": 2}}
    grid = load_grid(str(write_grid({"scenarios": DUAL, "noise": [0.1], "methods": ["average", "explode", fcsae]})))
    out = tmp_path / "run"
    first = io.StringIO()
    assert run_grid(grid, out=out, executor="ray", progress_stream=first) == 1
    metas = {m["config"]["method"]: m for m in (pd.read_json(p, typ="series")
                                                 for p in (out / "cells").glob("*.json"))}
    assert metas["average"]["status"] == "done" and metas["fcsae"]["status"] == "done"
    assert metas["explode"]["status"] == "failed"
    assert "RuntimeError: boom: exploded in fit" in metas["explode"]["error"]
    assert "1 cell(s) failed" in first.getvalue() and metas["explode"]["id"] in first.getvalue()
    assert process_tree(os.getpid()) == []  # the private Ray (and the queue's actor with it) is gone

    lines = first.getvalue().splitlines()
    cell = "fcsae · dual · σ=0.1 · seed 0"
    epochs = [i for i, line in enumerate(lines) if line.startswith(f"    {cell}: epoch ")]
    assert [lines[i].split(": epoch ")[1].split()[0] for i in epochs] == ["1/2", "2/2"], lines
    assert all(" train " in lines[i] and " val " in lines[i] and " | ETA " in lines[i] for i in epochs)
    finished = next(i for i, line in enumerate(lines) if re.match(rf"\[[123]/3\] {re.escape(cell)}: MSE", line))
    assert epochs[-1] < finished

    before = mtimes(out)
    explode_method.unlink()  # the method is fixed
    second = io.StringIO()
    assert run_grid(grid, out=out, executor="ray", progress_stream=second) == 0
    assert "1 to run" in second.getvalue()
    after = mtimes(out)
    assert before.items() <= after.items() and len(after) == 3  # average and fcsae untouched; explode now done
    assert process_tree(os.getpid()) == []


def test_ctrl_c_cancels_keeps_finished_cells_stops_ray_and_the_rerun_completes(tmp_path, write_grid):
    entry, plugin_env, hold = gated(tmp_path)
    grid = write_grid({"scenarios": DUAL, "noise": [0.1], "seeds": [0, 1, 2, 3], "methods": [entry],
                       "plugins": ["gated_demo"]})
    out = tmp_path / "run"
    env = {**marker(), **plugin_env}
    proc = popen_bench("run", "--grid", str(grid), "--out", str(out), cwd=tmp_path, env=env,
                       log=tmp_path / "first.log")
    try:
        wait_for(lambda: list((out / "cells").glob("*.parquet")) if (out / "cells").exists() else [], 180,
                 "a finished cell", proc)
        ips = listening_ips(_marker_processes(env))
        assert ips and ips <= LOOPBACK_IPS, ips  # the private Ray listens on 127.0.0.1 only
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130, (tmp_path / "first.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_nothing_left(env)
    log = (tmp_path / "first.log").read_text()
    assert "interrupted" in log and "Traceback" not in log
    kept = mtimes(out)
    assert len(kept) == 1, log  # seed 0's cell; the others were held in fit when the signal came
    hold.unlink()

    # resuming is the runner's (two Ray runs in a row are tested above): the quicker local executor will do
    again = bench("run", "--grid", str(grid), "--out", str(out), "--executor", "local", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert f"{4 - len(kept)} to run" in again.stderr
    after = mtimes(out)
    assert len(after) == 4 and kept.items() <= after.items()  # finished cells were not recomputed
    assert_nothing_left(env)


def test_what_a_cell_asks_ray_for():
    base = plan_grid(parse_grid({**TINY_GRID, "methods": ["average"]})).cells[0]
    gpu_cell = replace(base, resources=Resources(cpu=1, gpu=0.5))
    big_cell = replace(base, resources=Resources(cpu=8, gpu=0))
    cpu_only = Capacity(cpu=4, gpu=0, node_cpu=2, node_gpu=0, nodes=2)
    with_gpu = Capacity(cpu=16, gpu=2, node_cpu=16, node_gpu=1, nodes=2)
    # no GPU anywhere: the GPU cell becomes a one-core CPU cell on the CPU
    assert (cpu_only.request(gpu_cell).cpu, cpu_only.request(gpu_cell).gpu) == (1.0, 0.0)
    assert cpu_only.request(gpu_cell).device == "cpu" and cpu_only.request(gpu_cell).threads == 1
    # with GPUs it asks for its share of one; run_cell then picks CUDA
    assert (with_gpu.request(gpu_cell).gpu, with_gpu.request(gpu_cell).device) == (0.5, None)
    # never more than the largest node has (Ray would wait forever), and as many torch threads as CPUs
    assert (cpu_only.request(big_cell).cpu, cpu_only.request(big_cell).threads) == (2.0, 2)
    assert (with_gpu.request(big_cell).cpu, with_gpu.request(big_cell).threads) == (8.0, 8)
