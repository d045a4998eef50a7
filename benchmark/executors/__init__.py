"""Executors run cells and hand each result to the driver's callback; the driver writes it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from sepbench.cell import CellResult
from sepbench.errors import UserError
from sepbench.plan import Cell
from sepbench.progress import RunProgress

EXECUTORS = ("ray", "local")


class Executor(Protocol):
    def run(self, cells: Sequence[Cell], on_result: Callable[[CellResult], None], progress: RunProgress) -> None:
        """Run every cell; call ``on_result`` in the driver for each, as soon as it finishes."""


def make_executor(name: str, *, data_dir: str | Path | None = None, address: str | None = None,
                  checkpoint_dir: str | Path | None = None, jobs: int = 1) -> Executor:
    """The executor called ``name`` ('ray' or 'local'); ``checkpoint_dir``: where cells that train keep their
    training checkpoints (:func:`sepbench.cell.run_cell`), None for none; ``jobs``: cells the local executor runs
    side by side, each in a child process of its own."""
    if name == "local":
        from sepbench.executors.local import LocalExecutor

        return LocalExecutor(data_dir=data_dir, checkpoint_dir=checkpoint_dir, jobs=jobs)
    if jobs != 1:
        raise UserError("--jobs is for --executor local (Ray puts as many cells side by side as resources allow)")
    if name == "ray":
        from sepbench.executors.ray import RayExecutor

        return RayExecutor(data_dir=data_dir, address=address, checkpoint_dir=checkpoint_dir)
    raise UserError(f"unknown executor {name!r} (known: {', '.join(EXECUTORS)})")
