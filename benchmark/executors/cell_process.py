"""A child process that runs the local executor's cells that have a time limit (or, with several jobs, all its
cells), watched from the driver.

A timer inside the driver's own process cannot stop a ``fit()`` hung in native code (a C call holding the thread,
a blocking syscall); ending a process can. The child is a fresh interpreter (``python -m`` this module: CUDA,
threads and locks of the driver are not inherited) that talks to the driver over a socket pair. It imports what
the driver had (its import path, the grid's plugins, a method's module) and loads the source images once, then
runs cells one after another as the driver sends them, reporting epochs back. A cell past its limit has the child
and everything under it killed by PID; the next limited cell gets a new child. The limit counts from the moment
the child takes the cell, not its start-up (importing torch, loading the images), which the in-process executor
has done before the first cell too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil

from sepbench.cell import CellResult
from sepbench.executors.processes import die_with_parent, kill_all, process_tree, wait_gone
from sepbench.executors.ray_worker import failed_result, timed_out_result
from sepbench.plan import Cell

STARTUP_LIMIT = 300.0  # seconds for a new child to import torch and load the images before it takes a cell


def _serve(conn: Connection, parent: int) -> None:
    """The child's loop: take (cell, method module) from ``conn``, send back progress and the result."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's: it stops this process by PID
    if os.getppid() != parent:  # the driver died before its death could be signalled here
        return
    data_dir, driver_path, threads, checkpoint_dir = conn.recv()
    import torch

    from sepbench.cell import load_sources, run_cell
    from sepbench.executors.ray_worker import import_like_driver
    from sepbench.provenance import read_installed

    torch.set_num_threads(threads)
    try:  # MNIST, the usual dataset, loaded before the first cell's time limit starts (cells load their own)
        load_sources(data_dir)
    except Exception:  # noqa: BLE001 — not here, or not needed: the cells that need it record why
        pass
    read_installed()
    while True:
        try:
            cell, module = conn.recv()
        except EOFError:  # the driver is done with this process
            return
        conn.send(("started", None))
        try:
            import_like_driver(driver_path, cell, module)
        except Exception as exc:  # as on a Ray worker: a plugin that cannot load fails its cells
            conn.send(("result", failed_result(cell, f"cannot load method {cell.method!r}: "
                                                     f"{type(exc).__name__}: {exc}")))
            continue
        result = run_cell(cell, data_dir, progress=lambda info: conn.send(("progress", info)),
                          checkpoint_dir=checkpoint_dir)
        conn.send(("result", result))


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "it stopped answering"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"it was killed by {signal.Signals(-code).name}"
        return f"it was killed by signal {-code}"
    return f"it exited with status {code}"


class CellProcess:
    """One child process that runs cells (the local executor's limited ones, or all of them side by side with
    several jobs); :meth:`run` ends it when a cell passes its limit."""

    def __init__(self, data_dir: str | Path | None, checkpoint_dir: str | Path | None = None,
                 threads: int | None = None, gpu: int | None = None) -> None:
        """``threads``: torch threads in the child (default: the driver's); ``gpu``: the one GPU it sees
        (``CUDA_VISIBLE_DEVICES``; default: all)."""
        import torch

        env = None if gpu is None else {**os.environ, "CUDA_VISIBLE_DEVICES": str(gpu)}
        mine, theirs = socket.socketpair()
        with theirs:  # in its own session: Ctrl-C at the terminal is the driver's, which stops the child by PID
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sepbench.executors.cell_process", str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, start_new_session=True, env=env,
                preexec_fn=die_with_parent if sys.platform == "linux" else None)
        self.conn = Connection(mine.detach())
        self.handle = psutil.Process(self.process.pid)  # PID and start time: never a PID reused since
        driver_path = [p for p in sys.path if p and os.path.isdir(p)]
        self.conn.send((None if data_dir is None else str(data_dir), driver_path, threads or torch.get_num_threads(),
                        None if checkpoint_dir is None else str(checkpoint_dir)))
        self.started = False  # has it taken a cell yet (i.e. finished its start-up)?

    def alive(self) -> bool:
        return self.process.poll() is None

    def run(self, cell: Cell, limit: float, report: Callable[[dict[str, Any]], None]) -> CellResult:
        """Run ``cell`` in the child; past ``limit`` seconds the child is killed and the cell recorded as failed."""
        from sepbench.registry import get_method

        begun = time.monotonic()
        try:
            self.conn.send((cell, get_method(cell.method).__module__))
        except OSError:  # the child is gone
            return self._died(cell, begun)
        deadline = begun + limit if self.started else begun + STARTUP_LIMIT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                if not self.started:
                    return failed_result(cell, f"its process did not start within {STARTUP_LIMIT:g} s")
                return timed_out_result(cell, limit, time.monotonic() - begun)
            if not self.conn.poll(min(left, 1.0)):
                if not self.alive():
                    return self._died(cell, begun)
                continue
            try:
                kind, payload = self.conn.recv()
            except (EOFError, OSError):
                return self._died(cell, begun)
            if kind == "started":
                self.started, begun = True, time.monotonic()
                deadline = begun + limit
            elif kind == "progress":
                report(payload)
            else:
                return payload

    def _died(self, cell: Cell, begun: float) -> CellResult:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        reason = _exit_reason(self.process.poll())
        self.stop()
        return failed_result(cell, f"the cell's process ended before the cell did: {reason}",
                             time.monotonic() - begun)

    def stop(self) -> None:
        """Kill the child and everything it started, by PID, and wait for them."""
        tree = [self.handle, *process_tree(self.handle.pid)]
        with contextlib.suppress(OSError):
            self.conn.close()
        kill_all(tree)
        wait_gone(tree, 10)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


if __name__ == "__main__":  # the child: python -m sepbench.executors.cell_process FD DRIVER_PID
    _serve(Connection(int(sys.argv[1])), int(sys.argv[2]))
