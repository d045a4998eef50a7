"""The local executor: every cell in this process, one after another (debugging, tests of cell logic)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from sepbench.cell import CellResult, run_cell
from sepbench.plan import Cell
from sepbench.progress import RunProgress


class LocalExecutor:
    def __init__(self, data_dir: str | Path | None = None) -> None:
        self.data_dir = data_dir

    def run(self, cells: Sequence[Cell], on_result: Callable[[CellResult], None], progress: RunProgress) -> None:
        for cell in cells:
            progress.started_cell(cell.describe())
            result = run_cell(cell, self.data_dir, progress=progress.epoch_reporter(cell.describe()))
            on_result(result)
            progress.finished_cell(cell.describe(), result.meta)
