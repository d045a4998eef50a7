"""The Ray executor: one task per cell, spread over every CPU and GPU of this machine or of a Ray cluster.

Without an address it starts a private single-node Ray (:mod:`sepbench.executors.ray_cluster`) and stops it, by
PID, at the end; with ``--address`` / ``RAY_ADDRESS`` it joins an existing cluster. The scheduler
(:mod:`sepbench.executors.ray_scheduler`) sends the cells, longest first; a task runs
:func:`sepbench.executors.ray_worker.run_cell_task` and sends its :class:`CellResult` back through Ray (no shared
filesystem); the driver writes it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sepbench.cell import CellResult
from sepbench.executors.processes import sigint_shielded
from sepbench.executors.ray_cluster import (
    START_TIMEOUT,
    PrivateRay,
    check_reachable,
    connect,
    driver_settings,
    is_loopback,
)
from sepbench.executors.ray_scheduler import Scheduler
from sepbench.plan import Cell
from sepbench.progress import RunProgress
from sepbench.signals import install_sigterm_handler


class RayExecutor:
    """Runs cells as Ray tasks on a private Ray of this machine, or on the cluster at ``address``."""

    def __init__(self, data_dir: str | Path | None = None, address: str | None = None,
                 checkpoint_dir: str | Path | None = None) -> None:
        self.data_dir = str(data_dir) if data_dir is not None else None
        # absolute: a worker's working directory is not the driver's
        self.checkpoint_dir = str(Path(checkpoint_dir).absolute()) if checkpoint_dir is not None else None
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        if self.address is not None:
            check_reachable(self.address)  # before the run directory is written

    def run(self, cells: Sequence[Cell], on_result: Callable[[CellResult], None], progress: RunProgress) -> None:
        if not cells:
            return
        if "ray" not in sys.modules:  # one line per cell and epoch, as with the local executor
            os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        import ray

        scheduler = Scheduler(ray, self.data_dir, on_result, progress, checkpoint_dir=self.checkpoint_dir)
        if ray.is_initialized():  # a driver already connected (a notebook): use its Ray, leave it running
            scheduler.run(cells)
            return
        private: PrivateRay | None = None
        try:
            if self.address is None:
                started = time.monotonic()
                with sigint_shielded():  # once started, it must be known here to be stopped
                    private = PrivateRay()
                progress.line(f"  starting a private Ray on this machine (127.0.0.1; temp dir {private.temp_dir}; "
                              f"usually 5–20 s, at most {START_TIMEOUT:g} s) …")
                private.wait_started()
                progress.line(f"  … Ray started in {time.monotonic() - started:.1f} s")
                address, auth = private.address, private.auth
            else:
                address, auth = self.address, {}
            settings = dict(auth) if sys.stderr.isatty() else {**auth, "RAY_COLOR_PREFIX": "0"}
            with driver_settings(settings, is_loopback(address)):
                try:
                    progress.line(f"  connecting this driver to Ray at {address} (a few seconds) …")
                    connect(ray, address)
                    install_sigterm_handler()  # ray.init replaced it with one that exits at once
                    scheduler.run(cells)
                finally:
                    with sigint_shielded():
                        ray.shutdown()
        finally:
            if private is not None:
                with sigint_shielded():
                    private.stop()
