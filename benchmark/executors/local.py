"""The local executor: every cell on this machine, without Ray.

With one job (the default) cells run one after another: a cell without a time limit in this process, a cell with
one in a child process (:mod:`sepbench.executors.cell_process`) that is killed when the cell passes its limit, so
that even a hang in native code ends. With ``jobs`` > 1 every cell runs in one of ``jobs`` child processes that
take the cells in the plan's order (longest first) as they come free: cells side by side where Ray is not installed
(a laptop, a GPU machine that packs several small cells onto one device). Each child gets an equal share of the CPU
threads and, on a machine with several GPUs, one of them in turn.
"""

from __future__ import annotations

import collections
import math
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sepbench.cell import CellResult, run_cell
from sepbench.executors.processes import sigint_shielded
from sepbench.plan import Cell
from sepbench.progress import RunProgress


class LocalExecutor:
    def __init__(self, data_dir: str | Path | None = None, checkpoint_dir: str | Path | None = None,
                 jobs: int = 1) -> None:
        self.data_dir = data_dir
        self.checkpoint_dir = checkpoint_dir  # where cells keep training checkpoints (None: none)
        self.jobs = max(1, int(jobs))

    def run(self, cells: Sequence[Cell], on_result: Callable[[CellResult], None], progress: RunProgress) -> None:
        if self.jobs > 1 and len(cells) > 1:
            self._run_side_by_side(cells, on_result, progress)
            return
        from sepbench.executors.cell_process import CellProcess

        child: CellProcess | None = None
        try:
            for cell in cells:
                progress.started_cell(cell.describe())
                report = progress.epoch_reporter(cell.describe())
                if cell.timeout is None:
                    result = run_cell(cell, self.data_dir, progress=report, checkpoint_dir=self.checkpoint_dir)
                else:
                    if child is None or not child.alive():
                        child = CellProcess(self.data_dir, self.checkpoint_dir)
                    result = child.run(cell, cell.timeout, report)
                on_result(result)
                progress.finished_cell(cell.describe(), result.meta)
        finally:
            if child is not None:
                with sigint_shielded():
                    child.stop()

    def _run_side_by_side(self, cells: Sequence[Cell], on_result: Callable[[CellResult], None],
                          progress: RunProgress) -> None:
        """``jobs`` child processes, each fed by a thread of this process; results and progress lines go through
        one lock, so the driver writes one cell at a time. Ctrl-C (or SIGTERM) ends the children by PID and keeps
        every result written before it; a failure of the driver's own (a full disk) stops the others too."""
        import torch

        from sepbench.executors.cell_process import CellProcess

        queue = collections.deque(cells)
        lock = threading.Lock()
        stop = threading.Event()
        children: list[CellProcess] = []
        errors: list[BaseException] = []
        jobs = min(self.jobs, len(cells))
        threads = max(1, (os.cpu_count() or 1) // jobs)
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0

        def locked(report: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
            def call(info: dict[str, Any]) -> None:
                with lock:
                    report(info)
            return call

        def work(slot: int) -> None:
            child: CellProcess | None = None
            try:
                while not stop.is_set():
                    with lock:
                        if not queue:
                            return
                        cell = queue.popleft()
                        progress.started_cell(cell.describe())
                    if child is None or not child.alive():
                        child = CellProcess(self.data_dir, self.checkpoint_dir, threads=threads,
                                            gpu=slot % gpus if gpus > 1 else None)
                        with lock:
                            children.append(child)
                    result = child.run(cell, math.inf if cell.timeout is None else cell.timeout,
                                       locked(progress.epoch_reporter(cell.describe())))
                    if stop.is_set():  # interrupted: its child was ended for that, not by the cell
                        return
                    with lock:
                        on_result(result)
                        progress.finished_cell(cell.describe(), result.meta)
            except BaseException as exc:  # noqa: BLE001 — handed to the driver's thread, which raises it
                errors.append(exc)
                stop.set()

        workers = [threading.Thread(target=work, args=(slot,), name=f"sepbench-job-{slot}", daemon=True)
                   for slot in range(jobs)]
        for worker in workers:
            worker.start()
        try:
            while any(worker.is_alive() for worker in workers):
                for worker in workers:
                    worker.join(0.2)  # short waits: Ctrl-C reaches this thread between them
        finally:
            stop.set()
            with sigint_shielded():
                with lock:
                    running = list(children)
                for child in running:
                    child.stop()
                for worker in workers:
                    worker.join(10)
        if errors:
            raise errors[0]
