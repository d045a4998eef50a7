"""Process lifecycle for the executors: a process tree stopped by PID (psutil), and clean-up shielded from Ctrl-C.

psutil identifies a process by PID *and* start time, so a PID reused after a process has gone is never signalled.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import time
from collections.abc import Iterable

import psutil

from sepbench.signals import signals_ignored


def process_tree(pid: int) -> list[psutil.Process]:
    """Every process below ``pid`` (children, grandchildren, …); empty when ``pid`` is gone."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def is_running(process: psutil.Process) -> bool:
    """``process`` still exists as the same process (not a PID reused since) and is not a zombie."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_gone(processes: Iterable[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until none of ``processes`` runs; returns those still running at the timeout."""
    deadline = time.monotonic() + timeout
    left = [p for p in processes if is_running(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if is_running(p)]
    return left


def kill_all(processes: Iterable[psutil.Process]) -> None:
    """SIGKILL each of ``processes`` that is still the process it was."""
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()


def stop_process_tree(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM ``proc`` (``ray start --block`` then stops its node in order: GCS and raylet hang when sent
    SIGTERM all at once), then SIGKILL whatever is left of its tree after ``grace`` seconds; by PID only."""
    tree = process_tree(proc.pid)  # taken first: once ``proc`` has exited its children are no longer its own
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    kill_all(wait_gone(tree, grace))
    wait_gone(tree, 5)


def die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the driver dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def sigint_shielded() -> contextlib.AbstractContextManager[None]:
    """Clean-up must not be cut short by a second Ctrl-C or a SIGTERM (it would leave processes behind)."""
    return signals_ignored()
