"""Handing cells to a connected Ray: longest first, no more at a time than the cluster holds, results as they come.

Each cell asks for the resources its method declares (fractional GPUs share a device); with no GPU in the
cluster a GPU cell becomes a CPU cell. A worker or node that dies gets the cell retried (up to ``MAX_RETRIES``);
a method that raises gives a failed result, not retried; a crashed worker's last log lines go into its cell's
record. A cell past its time limit (:mod:`sepbench.executors.ray_limits`) is cancelled (its worker killed, its slot
freed) and recorded as failed, not retried. On Ctrl-C finished cells are kept, the rest cancelled.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sepbench.cell import CellResult
from sepbench.executors.processes import sigint_shielded
from sepbench.executors.ray_limits import Limits
from sepbench.executors.ray_logs import crash_message, logs_dir, worker_log_tail
from sepbench.executors.ray_worker import failed_result, run_cell_task, timed_out_result
from sepbench.plan import Cell
from sepbench.progress import RunProgress

MAX_RETRIES = 3  # a cell whose worker or node dies is run again, up to this many times
OnResult = Callable[[CellResult], None]


@dataclass
class Request:
    """What one cell asks Ray for, and how it then runs: torch threads, and the device (None: its own pick)."""

    cpu: float
    gpu: float
    threads: int
    device: str | None


@dataclass
class Capacity:
    """The CPUs and GPUs of the cluster's live nodes, in all and on the largest node."""

    cpu: float = 0.0
    gpu: float = 0.0
    node_cpu: float = 0.0  # the most any one node has
    node_gpu: float = 0.0
    nodes: int = 0

    @classmethod
    def read(cls, ray: Any) -> Capacity:
        alive = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        return cls(cpu=sum(r.get("CPU", 0.0) for r in alive), gpu=sum(r.get("GPU", 0.0) for r in alive),
                   node_cpu=max((r.get("CPU", 0.0) for r in alive), default=0.0),
                   node_gpu=max((r.get("GPU", 0.0) for r in alive), default=0.0), nodes=len(alive))

    def request(self, cell: Cell) -> Request:
        """What ``cell`` asks Ray for: its declared resources, GPU → CPU without GPUs, no more than a node has."""
        cpu, gpu = float(cell.resources.cpu), float(cell.resources.gpu)
        if gpu > 0 and self.node_gpu <= 0:
            gpu, cpu = 0.0, max(cpu, 1.0)  # a GPU cell on CPUs needs at least a whole core
        if self.node_cpu > 0:
            cpu = min(cpu, self.node_cpu)
        if gpu > 0:
            gpu = min(gpu, self.node_gpu)
        return Request(cpu, gpu, max(1, math.floor(cpu)), None if gpu > 0 else "cpu")


class Scheduler:
    """Runs ``cells`` on the connected ``ray``, calling ``on_result`` in the driver as each one finishes."""

    def __init__(self, ray: Any, data_dir: str | None, on_result: OnResult, progress: RunProgress,
                 checkpoint_dir: str | None = None) -> None:
        self.ray, self.data_dir, self.on_result, self.progress = ray, data_dir, on_result, progress
        self.checkpoint_dir = checkpoint_dir  # the run's checkpoints/ folder, as the driver sees it (None: none)
        self.inflight: dict[Any, tuple[Cell, Request]] = {}
        self.limits: Limits | None = None
        self.queue: Any = None  # the cells' epoch reports and notices, from the workers (ray.util.queue.Queue)

    def run(self, cells: Sequence[Cell]) -> None:
        try:
            self._schedule(cells)
        except KeyboardInterrupt:
            self._harvest()
            raise
        finally:
            with sigint_shielded():
                for ref in self.inflight:  # pending and running cells of this run: cancelled, workers killed
                    with contextlib.suppress(Exception):
                        self.ray.cancel(ref, force=True)
                if self.limits is not None and self.limits.board is not None:
                    with contextlib.suppress(Exception):
                        self.ray.kill(self.limits.board)
                if self.queue is not None:
                    with contextlib.suppress(Exception):
                        self.ray.kill(self.queue.actor)

    def _schedule(self, cells: Sequence[Cell]) -> None:
        from sepbench.registry import get_method

        ray, inflight = self.ray, self.inflight
        task = ray.remote(run_cell_task)
        driver_path = [p for p in sys.path if p and os.path.isdir(p)]
        modules = {c.method: get_method(c.method).__module__ for c in cells}
        from ray.util.queue import Queue

        self.queue = Queue(actor_options={"num_cpus": 0})  # takes no CPU a cell could have
        pending = sorted(cells, key=lambda c: c.expected_seconds, reverse=True)  # longest first
        capacity = Capacity.read(ray)
        self.limits = limits = Limits(ray, cells)
        gpu_note = "" if capacity.gpu > 0 else " (no GPU: GPU cells run on CPUs)"
        self.progress.line(f"  Ray: {capacity.nodes} node(s), {capacity.cpu:g} CPUs, {capacity.gpu:g} GPUs"
                           f"{gpu_note}")
        checked = time.monotonic()
        while pending or inflight:
            if time.monotonic() - checked > 1.0:
                capacity, checked = Capacity.read(ray), time.monotonic()
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
                                                     req.threads, req.device, limits.board, self.queue,
                                                     checkpoint_dir=self.checkpoint_dir)
                inflight[ref] = (cell, req)
                limits.handed(cell, ref)
                used_cpu, used_gpu = used_cpu + req.cpu, used_gpu + req.gpu
                pending.remove(cell)
                self.progress.started_cell(cell.describe())
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            self._drain()  # before a finished cell's line: its epochs come first
            for ref in ready:
                self._finish(ref)
            self._end_overdue()

    def _end_overdue(self) -> None:
        """Cancel the cells past their time limit (force: the worker is killed, which a hang in native code
        needs) and record them as failed; a cancelled task is not retried."""
        assert self.limits is not None
        for ref, seconds in self.limits.overdue(self.inflight):
            ready, _ = self.ray.wait([ref], num_returns=1, timeout=0)
            if ready:  # it finished just now: keep it
                self._finish(ref)
                continue
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
            cell, _ = self.inflight.pop(ref)
            self.limits.forget(ref)
            result = timed_out_result(cell, cell.timeout, seconds)
            self.on_result(result)
            self.progress.finished_cell(cell.describe(), result.meta)

    def _drain(self) -> None:
        """Print what running cells reported (epochs, notices) and let it steer the ETA."""
        if self.queue is None:
            return
        try:
            count = self.queue.size()
            items = self.queue.get_nowait_batch(count) if count else []
        except Exception:  # the queue's actor died: progress lines are lost, results are not
            return
        for description, info in items:
            self.progress.epoch_reporter(description)(info)

    def _finish(self, ref: Any) -> None:
        cell, _ = self.inflight.pop(ref)
        if self.limits is not None:
            self.limits.forget(ref)
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:  # the worker or node died more often than retried, or similar
            lines = [line for line in str(exc).splitlines() if line.strip()]
            log = worker_log_tail(logs_dir(self.ray), f"cell-{cell.id}")
            message = crash_message(lines[0] if lines else "", log is not None)
            result = failed_result(cell, f"{type(exc).__name__}: {message}"[:500],
                                   **({"worker_log": log} if log is not None else {}))
        self.on_result(result)
        self.progress.finished_cell(cell.describe(), result.meta)

    def _harvest(self) -> None:
        """On Ctrl-C: keep the cells that finished but were not collected yet."""
        if not self.inflight:
            return
        with sigint_shielded(), contextlib.suppress(Exception):
            ready, _ = self.ray.wait(list(self.inflight), num_returns=len(self.inflight), timeout=0)
            for ref in ready:
                self._finish(ref)
