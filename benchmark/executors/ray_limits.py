"""Cells' time limits under Ray: a limit counts from when the cell starts on its worker (after the worker's
start-up: importing torch, the plugins, loading the images), as under the local executor.

The driver cannot see when Ray starts a task (the state API needs the dashboard, which sepbench's Ray has not), so
a limited cell tells a small actor (no CPU) as it starts; the driver reads the actor on each turn of its loop.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from sepbench.plan import Cell


class StartBoard:
    """The Ray actor limited cells report their start to; the driver takes the news."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def mark(self, cell_id: str) -> None:
        self.started.append(cell_id)

    def take(self) -> list[str]:
        started, self.started = self.started, []
        return started


class Limits:
    """Which limited cells have started (and when, by the driver's clock), and which are past their limit."""

    def __init__(self, ray: Any, cells: Sequence[Cell]) -> None:
        self.ray = ray
        limited = any(c.timeout is not None for c in cells)
        self.board = ray.remote(num_cpus=0)(StartBoard).remote() if limited else None
        self.waiting: dict[str, Any] = {}  # cell id → ref: handed to Ray, not started yet
        self.running: dict[Any, float] = {}  # ref → when its cell started (monotonic)

    def handed(self, cell: Cell, ref: Any) -> None:
        if cell.timeout is not None:
            self.waiting[cell.id] = ref

    def forget(self, ref: Any) -> None:
        self.running.pop(ref, None)
        self.waiting = {k: r for k, r in self.waiting.items() if r != ref}

    def overdue(self, inflight: Mapping[Any, tuple[Cell, Any]]) -> list[tuple[Any, float]]:
        """(ref, seconds it has run) of each cell past its limit; a retried cell's limit covers every attempt."""
        if not self.waiting and not self.running:
            return []
        now = time.monotonic()
        if self.waiting:
            try:
                started = self.ray.get(self.board.take.remote(), timeout=10)
            except self.ray.exceptions.GetTimeoutError:  # no news this turn (the board is still starting)
                started = []
            except Exception:  # the board is gone (its node died): count from now
                started = list(self.waiting)
            for cell_id in started:
                ref = self.waiting.pop(cell_id, None)
                if ref is not None:
                    self.running[ref] = now
        return [(ref, now - since) for ref, since in self.running.items() if now - since >= inflight[ref][0].timeout]
