"""The Ray executor: one task per cell, spread over every CPU and GPU of this machine or of a Ray cluster.

Without an address it starts a private single-node Ray (``ray start --head`` in a session of its own, bound to
127.0.0.1, no dashboard, its own temp dir, token authentication with a fresh per-run token) and stops it, by
PID, at the end; with ``--address`` / ``RAY_ADDRESS`` it joins an existing cluster, whose auth settings come from
the environment (``RAY_AUTH_MODE``, ``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH``, as on its nodes).

Each cell asks for the resources its method declares (fractional GPUs share a device); with no GPU in the
cluster a GPU cell becomes a CPU cell. Cells go longest first. A task runs ``run_cell`` and sends its
:class:`CellResult` back through Ray (no shared filesystem); the driver writes it. A worker or node that dies
gets the cell retried; a method that raises gives a failed result, not retried.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sepbench.cell import CellResult
from sepbench.errors import UserError
from sepbench.plan import Cell
from sepbench.progress import RunProgress

LOOPBACK = "127.0.0.1"
MAX_RETRIES = 3  # a cell whose worker or node dies is run again, up to this many times
START_TIMEOUT = 120.0  # seconds for the private Ray to come up
_AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


# ----------------------------------------------------------------------------------------------- in the worker


def _import_on_worker(driver_path: Sequence[str], cell: Cell, module: str | None) -> None:
    """Make the worker see what the driver sees: its import path (appended), the grid's plugins, and — for a
    method registered in the driver by importing a module by hand — that module."""
    from sepbench import registry

    for entry in driver_path:
        if entry not in sys.path and os.path.isdir(entry):
            sys.path.append(entry)
    plugins = tuple(getattr(cell, "plugins", ()) or ())
    if plugins and hasattr(registry, "import_plugins"):
        registry.import_plugins(plugins)
    if module and module != "__main__" and cell.method not in registry.available_methods():
        importlib.import_module(module)


def run_cell_task(cell: Cell, data_dir: str | None, module: str | None, driver_path: Sequence[str],
                  threads: int, device: str | None) -> CellResult:
    """The body of one Ray task: torch threads = the task's CPUs, then :func:`sepbench.cell.run_cell`."""
    import torch

    from sepbench.cell import run_cell

    torch.set_num_threads(threads)
    try:
        _import_on_worker(driver_path, cell, module)
    except Exception as exc:  # a plugin missing on this node fails its cells, not the run
        return failed_result(cell, f"cannot load method {cell.method!r} on {platform.node()}: "
                                   f"{type(exc).__name__}: {exc}")
    report = RunProgress(0, sys.stderr).epoch_reporter(cell.describe())
    result = run_cell(cell, data_dir, device=torch.device(device) if device else None, progress=report)
    with contextlib.suppress(Exception):  # where it ran, for the record
        import ray

        result.meta["ray_node"] = ray.get_runtime_context().get_node_id()
    return result


def failed_result(cell: Cell, error: str) -> CellResult:
    meta = {"id": cell.id, "config": cell.config(), "status": "failed", "error": error, "seconds": 0.0,
            "host": platform.node()}
    return CellResult(cell.id, "failed", meta)


# ---------------------------------------------------------------------------------------------- processes


def process_tree(pid: int) -> list[int]:
    """PIDs of every process below ``pid`` (children, grandchildren, …), read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _stat(pid: int) -> list[str] | None:
    """Fields 3… of /proc/PID/stat (state, ppid, …, start time at index 19), or None if there is no PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


def start_times(pids: Sequence[int]) -> dict[int, str]:
    """Who each PID is now (its start time), so that a PID reused later is not mistaken for it."""
    return {pid: stat[19] for pid in pids if (stat := _stat(pid)) is not None}


def is_running(pid: int, started: str | None = None) -> bool:
    """``pid`` exists, is not a zombie, and (given ``started``) is still the same process."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z" and (started is None or stat[19] == started)


def wait_gone(pids: Sequence[int], timeout: float, started: dict[int, str] | None = None) -> list[int]:
    """Wait until none of ``pids`` runs; returns those still running (the same processes) at the timeout."""
    started = started if started is not None else start_times(pids)
    deadline = time.monotonic() + timeout
    left = [p for p in pids if p in started and is_running(p, started[p])]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if is_running(p, started[p])]
    return left


def kill_pids(pids: Sequence[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def stop_process_tree(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM ``proc`` (``ray start --block`` then stops its node in order: GCS and raylet hang when sent
    SIGTERM all at once), then SIGKILL whatever is left of its tree after ``grace`` seconds; by PID only."""
    tree = process_tree(proc.pid)
    started = start_times(tree)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    late = [p for p in process_tree(proc.pid) if p not in started]  # none once ray start has exited
    started.update(start_times(late))
    tree += late
    kill_pids(wait_gone(tree, grace, started))
    wait_gone(tree, 5, started)


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the driver dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# ----------------------------------------------------------------------------------------- the private Ray


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _short_temp_dir() -> str:
    """A fresh temp dir whose path leaves room for Ray's unix socket names (~107 characters at most)."""
    base = tempfile.gettempdir()
    return tempfile.mkdtemp(prefix="sepbench-ray-", dir=base if len(base) < 40 else "/tmp")


class PrivateRay:
    """A single-node Ray on this machine for one run: 127.0.0.1 only, no dashboard, own temp dir, own token."""

    def __init__(self) -> None:
        self.temp_dir = _short_temp_dir()
        self.port = _free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        self.auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        env = {k: v for k, v in os.environ.items() if k not in (*_AUTH_VARS, "RAY_ADDRESS")}
        # on Linux Ray rewrites 127.0.0.1 to the machine's outward IP (and then listens on every interface);
        # this keeps the node on loopback, as Ray does on macOS and Windows
        env.update(self.auth, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0")
        self.log = Path(self.temp_dir) / "ray-start.log"
        command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                   f"--node-ip-address={LOOPBACK}", f"--port={self.port}", "--include-dashboard=false",
                   f"--temp-dir={self.temp_dir}", "--object-store-memory=268435456", "--disable-usage-stats"]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.temp_dir, start_new_session=True,
                                         preexec_fn=_die_with_parent if sys.platform == "linux" else None)

    def wait_started(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "Ray runtime started" in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        lines = [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
        why = lines[-1].strip() if lines else f"no output in {timeout:g} s"
        raise UserError(f"could not start a private Ray on this machine: {why} (or run with --executor local)")

    def stop(self) -> None:
        stop_process_tree(self.proc)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------- the driver side


def _is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    return host in ("127.0.0.1", "localhost", "::1")


@contextlib.contextmanager
def _driver_settings(env: dict[str, str], loopback: bool) -> Iterator[None]:
    """Auth, address and log settings of this driver process for one run, restored afterwards.

    Ray reads ``RAY_AUTH_*`` into cached config: after changing them the cache is refreshed, as ray.init does.
    """
    import ray
    import ray._private.ray_constants as ray_constants

    saved = {key: os.environ.get(key) for key in env}
    saved_cluster = ray_constants.ENABLE_RAY_CLUSTER
    os.environ.update(env)
    if loopback:  # keep 127.0.0.1 as 127.0.0.1 (see PrivateRay)
        ray_constants.ENABLE_RAY_CLUSTER = False
    _refresh_auth_config(ray)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        ray_constants.ENABLE_RAY_CLUSTER = saved_cluster
        _refresh_auth_config(ray)


def _refresh_auth_config(ray: Any) -> None:
    with contextlib.suppress(Exception):  # private API of ray 2.5x; without it only the env var counts
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


@contextlib.contextmanager
def _sigint_shielded() -> Iterator[None]:
    """Clean-up must not be cut short by a second Ctrl-C (it would leave Ray processes behind)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast when nothing listens at ``address`` (ray.init would retry for many minutes)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except ValueError:
        raise UserError(f"--address {address!r}: expected HOST:PORT") from None
    except OSError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc} (is its head "
                        f"node running? see the README, 'Running on a Ray cluster')") from None


def _connect(ray: Any, address: str) -> None:
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
    except Exception as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        message = lines[0] if lines else type(exc).__name__
        if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
            hint = "if the cluster uses token authentication (Ray's default), set RAY_AUTH_MODE=token and its token"
        else:
            hint = "check that the token is the cluster's"
        raise UserError(f"cannot join the Ray cluster at {address}: {message} ({hint}: RAY_AUTH_TOKEN or "
                        f"RAY_AUTH_TOKEN_PATH, as on its nodes; see the README, 'Running on a Ray cluster')") from None


@dataclass
class _Request:
    cpu: float
    gpu: float
    threads: int
    device: str | None


@dataclass
class _Capacity:
    cpu: float = 0.0
    gpu: float = 0.0
    node_cpu: float = 0.0  # the most any one node has
    node_gpu: float = 0.0
    nodes: int = 0

    @classmethod
    def read(cls, ray: Any) -> _Capacity:
        alive = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        return cls(cpu=sum(r.get("CPU", 0.0) for r in alive), gpu=sum(r.get("GPU", 0.0) for r in alive),
                   node_cpu=max((r.get("CPU", 0.0) for r in alive), default=0.0),
                   node_gpu=max((r.get("GPU", 0.0) for r in alive), default=0.0), nodes=len(alive))

    def request(self, cell: Cell) -> _Request:
        """What ``cell`` asks Ray for: its declared resources, GPU → CPU without GPUs, no more than a node has."""
        cpu, gpu = float(cell.resources.cpu), float(cell.resources.gpu)
        if gpu > 0 and self.node_gpu <= 0:
            gpu, cpu = 0.0, max(cpu, 1.0)  # a GPU cell on CPUs needs at least a whole core
        if self.node_cpu > 0:
            cpu = min(cpu, self.node_cpu)
        if gpu > 0:
            gpu = min(gpu, self.node_gpu)
        return _Request(cpu, gpu, max(1, math.floor(cpu)), None if gpu > 0 else "cpu")


class RayExecutor:
    """Runs cells as Ray tasks on a private Ray of this machine, or on the cluster at ``address``."""

    def __init__(self, data_dir: str | Path | None = None, address: str | None = None) -> None:
        self.data_dir = str(data_dir) if data_dir is not None else None
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        if self.address is not None:
            _check_reachable(self.address)  # before the run directory is written

    def run(self, cells: Sequence[Cell], on_result: Callable[[CellResult], None], progress: RunProgress) -> None:
        if not cells:
            return
        if "ray" not in sys.modules:  # one line per cell and epoch, as with the local executor
            os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        import ray

        if ray.is_initialized():  # a driver already connected (a notebook): use its Ray, leave it running
            self._run_connected(ray, cells, on_result, progress)
            return
        private: PrivateRay | None = None
        try:
            if self.address is None:
                progress.line("  starting a private Ray on this machine (127.0.0.1) …")
                with _sigint_shielded():  # once started, it must be known here to be stopped
                    private = PrivateRay()
                private.wait_started()
                address, auth = private.address, private.auth
            else:
                address, auth = self.address, {}
            settings = dict(auth) if sys.stderr.isatty() else {**auth, "RAY_COLOR_PREFIX": "0"}
            with _driver_settings(settings, _is_loopback(address)):
                try:
                    _connect(ray, address)
                    self._run_connected(ray, cells, on_result, progress)
                finally:
                    with _sigint_shielded():
                        ray.shutdown()
        finally:
            if private is not None:
                with _sigint_shielded():
                    private.stop()

    def _run_connected(self, ray: Any, cells: Sequence[Cell], on_result: Callable[[CellResult], None],
                       progress: RunProgress) -> None:
        inflight: dict[Any, tuple[Cell, _Request]] = {}
        try:
            self._schedule(ray, cells, on_result, progress, inflight)
        except KeyboardInterrupt:
            self._harvest(ray, inflight, on_result, progress)
            raise
        finally:
            with _sigint_shielded():
                for ref in inflight:  # pending and running cells of this run: cancelled, their workers killed
                    with contextlib.suppress(Exception):
                        ray.cancel(ref, force=True)

    def _schedule(self, ray: Any, cells: Sequence[Cell], on_result: Callable[[CellResult], None],
                  progress: RunProgress, inflight: dict[Any, tuple[Cell, _Request]]) -> None:
        from sepbench.registry import get_method

        task = ray.remote(run_cell_task)
        driver_path = [p for p in sys.path if p and os.path.isdir(p)]
        modules = {c.method: get_method(c.method).__module__ for c in cells}
        pending = sorted(cells, key=lambda c: c.expected_seconds, reverse=True)  # longest first
        capacity = _Capacity.read(ray)
        gpu_note = "" if capacity.gpu > 0 else " (no GPU: GPU cells run on CPUs)"
        progress.line(f"  Ray: {capacity.nodes} node(s), {capacity.cpu:g} CPUs, {capacity.gpu:g} GPUs{gpu_note}")
        checked = time.monotonic()
        while pending or inflight:
            if time.monotonic() - checked > 1.0:
                capacity, checked = _Capacity.read(ray), time.monotonic()
            used_cpu = sum(r.cpu for _, r in inflight.values())
            used_gpu = sum(r.gpu for _, r in inflight.values())
            for cell in list(pending):
                req = capacity.request(cell)
                fits = used_cpu + req.cpu <= capacity.cpu + 1e-9 and used_gpu + req.gpu <= capacity.gpu + 1e-9
                if inflight and not fits:
                    continue  # keep the queue in Ray short, so the longest cells really go first
                options = {"num_cpus": req.cpu, "num_gpus": req.gpu, "max_retries": MAX_RETRIES,
                           "retry_exceptions": False, "name": f"cell-{cell.id}"}
                ref = task.options(**options).remote(cell, self.data_dir, modules[cell.method], driver_path,
                                                     req.threads, req.device)
                inflight[ref] = (cell, req)
                used_cpu, used_gpu = used_cpu + req.cpu, used_gpu + req.gpu
                pending.remove(cell)
                progress.started_cell(cell.describe())
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in ready:
                self._finish(ray, ref, inflight, on_result, progress)

    @staticmethod
    def _finish(ray: Any, ref: Any, inflight: dict[Any, tuple[Cell, _Request]],
                on_result: Callable[[CellResult], None], progress: RunProgress) -> None:
        cell, _ = inflight.pop(ref)
        try:
            result = ray.get(ref)
        except ray.exceptions.RayError as exc:  # the worker or node died more often than retried, or similar
            lines = [line for line in str(exc).splitlines() if line.strip()]
            result = failed_result(cell, f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500])
        on_result(result)
        progress.finished_cell(cell.describe(), result.meta)

    def _harvest(self, ray: Any, inflight: dict[Any, tuple[Cell, _Request]],
                 on_result: Callable[[CellResult], None], progress: RunProgress) -> None:
        """On Ctrl-C: keep the cells that finished but were not collected yet."""
        if not inflight:
            return
        with _sigint_shielded():
            with contextlib.suppress(Exception):
                ready, _ = ray.wait(list(inflight), num_returns=len(inflight), timeout=0)
                for ref in ready:
                    self._finish(ray, ref, inflight, on_result, progress)
