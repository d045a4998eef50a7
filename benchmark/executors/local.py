"""The local executor: every cell on this machine, one after another (debugging, tests of cell logic).

A cell without a time limit runs in this process; a cell with one runs in a child process
(:mod:`sepbench.executors.cell_process`) that is killed when the cell passes its limit, so that even a hang in
native code ends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from sepbench.cell import CellResult, run_cell
from sepbench.executors.processes import sigint_shielded
from sepbench.plan import Cell
from sepbench.progress import RunProgress


class LocalExecutor:
    def __init__(self, data_dir: str | Path | None = None, checkpoint_dir: str | Path | None = None) -> None:
        self.data_dir = data_dir
        self.checkpoint_dir = checkpoint_dir  # where cells keep training checkpoints (None: none)

    def run(self, cells: Sequence[Cell], on_result: Callable[[CellResult], None], progress: RunProgress) -> None:
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
