"""A real multi-node Ray cluster on this machine, bound to 127.0.0.1 only, for the executor's tests.

Each node is a ``ray start --block`` process in a session of its own, so a test can crash one node (its whole
process tree, by PID) and stop everything it started. Run as a module, this file *is* ``ray start`` with one
change: on Linux Ray rewrites a loopback ``--node-ip-address`` / ``--address`` to the machine's outward IP (and
its servers then listen on every interface); here 127.0.0.1 stays 127.0.0.1, so every server binds to loopback.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from sepbench.executors.processes import kill_all, process_tree, stop_process_tree, wait_gone

LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]


def auth_env(token: str | None = None) -> dict[str, str]:
    """Token auth, the same on every node and driver of one cluster (README: Running on a Ray cluster)."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token or secrets.token_hex(32),
            "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


class RayNode:
    """One ``ray start --block`` node: the head when ``address`` is None, else a worker joining ``address``."""

    def __init__(self, env: dict[str, str], num_cpus: int = 1, address: str | None = None, tag: str = "n",
                 num_gpus: int = 0) -> None:
        """``num_gpus``: logical GPUs (Ray schedules them as if they were there; torch sees no CUDA)."""
        self.temp_dir = tempfile.mkdtemp(prefix=f"sb{tag}-", dir="/tmp")  # short: Ray's socket paths are limited
        self.port = free_port() if address is None else None
        self.address = address or f"{LOOPBACK}:{self.port}"
        self.log = Path(self.temp_dir) / "start.log"
        args = [sys.executable, "-m", "tests.raycluster", "start", "--block", f"--node-ip-address={LOOPBACK}",
                f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}", f"--temp-dir={self.temp_dir}",
                "--object-store-memory=100000000", "--disable-usage-stats"]
        args += ["--head", f"--port={self.port}", "--include-dashboard=false"] if address is None else \
            [f"--address={address}"]
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        full_env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **env, "PYTHONPATH": path}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(args, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.temp_dir)

    def wait_started(self, timeout: float = 120) -> RayNode:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if "Ray runtime started" in self.log.read_text(errors="replace"):
                return self
            time.sleep(0.2)
        text = self.log.read_text(errors="replace")
        self.stop()
        raise RuntimeError(f"ray node did not start (exit {self.proc.returncode}):\n{text[-3000:]}")

    def processes(self) -> list[psutil.Process]:
        """The node's ``ray start`` process and everything below it."""
        try:
            return [psutil.Process(self.proc.pid), *process_tree(self.proc.pid)]
        except psutil.NoSuchProcess:  # stopped or crashed, and reaped
            return []

    def crash(self) -> None:
        """SIGKILL the node: its process group (ray start, raylet, GCS or agents) and its workers, by PID."""
        tree = process_tree(self.proc.pid)  # workers sit in process groups of their own
        os.killpg(self.proc.pid, signal.SIGKILL)
        kill_all(tree)
        self.proc.wait(10)
        wait_gone(tree, 10)

    def stop(self) -> None:
        stop_process_tree(self.proc)
        shutil.rmtree(self.temp_dir, ignore_errors=True)  # the node's sockets, logs and session files


def processes_with_env(name: str, value: str) -> list[psutil.Process]:
    """Processes (not this one) whose environment sets ``name`` to ``value``: everything a run started."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.pid != os.getpid() and process.environ().get(name) == value:
                found.append(process)
        except psutil.Error:
            continue
    return found


def _keep_loopback() -> None:
    import ray._private.services as services

    original = services.resolve_ip_for_localhost
    services.resolve_ip_for_localhost = lambda host: host if host == LOOPBACK else original(host)


if __name__ == "__main__":
    _keep_loopback()
    from ray.scripts.scripts import main

    sys.argv[0] = "ray"
    main()
