"""What one Ray task runs, on whichever node Ray puts it: import what the driver had, then run one cell; and the
records of cells that did not run to the end (shared with the local executor's cell process)."""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import sys
from collections.abc import Callable, Sequence
from typing import Any

from sepbench.cell import CellResult
from sepbench.plan import Cell
from sepbench.progress import RunProgress


def import_like_driver(driver_path: Sequence[str], cell: Cell, module: str | None) -> None:
    """Make the worker see what the driver sees: its import path (appended), the grid's plugins, and — for a
    method registered in the driver by importing a module by hand — that module."""
    from sepbench import registry

    for entry in driver_path:
        if entry not in sys.path and os.path.isdir(entry):
            sys.path.append(entry)
    if cell.plugins:
        registry.import_plugins(cell.plugins)
    if module and module != "__main__" and cell.method not in registry.available_methods():
        importlib.import_module(module)


def progress_sender(cell: Cell, queue: Any) -> Callable[[dict[str, Any]], None]:
    """The cell's progress callback in a worker: each epoch report or notice goes to the driver's ``queue`` (a
    ``ray.util.queue.Queue``), which prints it and steers the ETA; without a queue (or if it is gone), stderr."""
    local = RunProgress(0, sys.stderr).epoch_reporter(cell.describe())

    def send(info: dict[str, Any]) -> None:
        if queue is not None:
            try:
                queue.put_nowait((cell.describe(), dict(info)))
                return
            except Exception:  # the driver's queue is gone: the line still shows in the worker's log
                pass
        local(info)

    return send


def run_cell_task(cell: Cell, data_dir: str | None, module: str | None, driver_path: Sequence[str],
                  threads: int, device: str | None, board: Any = None, progress_queue: Any = None,
                  checkpoint_dir: str | None = None) -> CellResult:
    """The body of one Ray task: torch threads = the task's CPUs, then :func:`sepbench.cell.run_cell`; a cell
    with a time limit tells ``board`` (:class:`sepbench.executors.ray_limits.StartBoard`) when it starts; its
    progress goes to the driver through ``progress_queue``. ``checkpoint_dir``: the run's checkpoint folder, used
    only where the run directory holding it is there too (the driver's node, or a shared file system); elsewhere
    the cell trains without checkpoints."""
    import torch

    from sepbench.cell import load_sources, run_cell
    from sepbench.provenance import read_installed

    torch.set_num_threads(threads)
    try:
        import_like_driver(driver_path, cell, module)
    except Exception as exc:  # a plugin missing on this node fails its cells, not the run
        return failed_result(cell, f"cannot load method {cell.method!r} on {platform.node()}: "
                                   f"{type(exc).__name__}: {exc}")
    report = progress_sender(cell, progress_queue)
    gpu_ids = None
    if device is None:  # a GPU cell: it runs on the GPU Ray gave this task (the CPU if torch sees no CUDA)
        import ray

        gpu_ids = ray.get_gpu_ids()
    if board is not None:  # the limit counts from here: the worker's start-up is done
        with contextlib.suppress(Exception):  # a failure to load is run_cell's to record
            for dataset in cell.datasets:  # each source's own set, under `sources:`
                load_sources(data_dir, dataset)
        read_installed()
        board.mark.remote(cell.id)
    if checkpoint_dir is not None and not os.path.isdir(os.path.dirname(checkpoint_dir.rstrip(os.sep))):
        checkpoint_dir = None  # another node, without the run directory: none made there
    result = run_cell(cell, data_dir, device=torch.device(device) if device else None, progress=report,
                      gpu_ids=gpu_ids, checkpoint_dir=checkpoint_dir)
    with contextlib.suppress(Exception):  # where it ran, for the record
        import ray

        result.meta["ray_node"] = ray.get_runtime_context().get_node_id()
    return result


def failed_result(cell: Cell, error: str, seconds: float = 0.0, **extra: object) -> CellResult:
    """The record of a cell that did not run to the end, with ``error`` as its cause (``extra``: more fields)."""
    meta = {"id": cell.id, "config": cell.config(), "status": "failed", "error": error, "seconds": seconds,
            "host": platform.node(), **extra}
    return CellResult(cell.id, "failed", meta)


def timed_out_result(cell: Cell, limit: float, seconds: float) -> CellResult:
    """The record of a cell its executor ended at its time limit (``limit`` seconds)."""
    return failed_result(cell, f"timed out after {limit:g} s (the cell's time limit: raise it with the grid "
                               f"entry's `timeout` or `bench run --cell-timeout`)", seconds, timeout=limit)
