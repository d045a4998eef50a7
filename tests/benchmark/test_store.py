"""The run directory's cell files: a Ctrl-C in the middle of writing a cell waits until all its files are there."""

from __future__ import annotations

import os
import signal

import numpy as np
import pandas as pd
import pytest
import yaml

import sepbench.store as store_module
from sepbench.cell import CellResult
from sepbench.grid import load_grid
from sepbench.plan import plan_grid
from sepbench.store import RunStore, interrupts_deferred
from tests.conftest import TINY_GRID


def _result(tmp_path) -> CellResult:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({**TINY_GRID, "methods": ["average"]}))
    cell = plan_grid(load_grid(str(path))).cells[0]
    rows = pd.DataFrame({"cell": cell.id, "method": "average", "label": "average", "scenario": "single",
                         "sigma": 0.01, "seed": 0, "mixture": [0, 0], "source": [0, 1], "mse": [0.1, 0.2],
                         "psnr": [10.0, 7.0], "ssim": [0.5, 0.4], "perm": [0, 1]})
    meta = {"id": cell.id, "config": cell.config(), "status": "done"}
    return CellResult(cell.id, "done", meta, rows, {"y": np.zeros((1, 1, 14, 14))})


def test_ctrl_c_while_a_cell_is_written_is_delivered_after_its_last_file(tmp_path, monkeypatch) -> None:
    store = RunStore(tmp_path / "run")
    real_write = store_module.atomic_write
    written: list[str] = []

    def write_then_interrupt(path, data) -> None:
        real_write(path, data)
        written.append(path.name)
        if len(written) == 1:  # Ctrl-C right after the rows, before the metadata that marks the cell done
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(store_module, "atomic_write", write_then_interrupt)
    result = _result(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        store.write_result(result, "run")
    assert written == [f"{result.cell_id}.parquet", f"{result.cell_id}.npz", f"{result.cell_id}.json"]
    assert store.cell_status(result.cell_id) == "done"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is restored


def test_interrupts_deferred_without_a_signal_changes_nothing() -> None:
    with interrupts_deferred():
        value = 1 + 1
    assert value == 2 and signal.getsignal(signal.SIGINT) is signal.default_int_handler
