"""A `bench run` killed mid-training resumes its cell from the last finished epoch's checkpoint (<run>/checkpoints/)
and records the same scores as an uninterrupted run; checkpoints are deleted once their cells are recorded, and
one made by other code or settings is never resumed."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from sepbench import leaderboard, training_machines
from sepbench.cell import checkpoint_epochs, checkpoint_file, checkpoint_key
from sepbench.grid import parse_grid
from sepbench.methods.training import CHECKPOINT_FORMAT
from sepbench.plan import plan_grid
from sepbench.provenance import provenance
from sepbench.registry import get_method
from sepbench.store import RunStore, foreign_dir_problem
from tests.conftest import TINY_GRID, bench

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # the same threads in every run: the same numbers
# about 0.1 s an epoch on an idle core: the run is killed at its first checkpoint, long before its last epoch
GRID = {"scenarios": {"single": {"weights": [[1, 1]], "downsample": 2}}, "noise": [0.1],
        "train": {"mixtures": 1000, "epochs": 30, "batch_size": 32, "lr": 1.0e-3},
        "methods": [{"method": "fcsae", "params": {"hidden": 128}}]}


def _record(run: Path) -> dict:
    (path,) = (run / "cells").glob("*.json")
    return json.loads(path.read_text())


def _wait_for_checkpoint(run: Path, proc: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list((run / "checkpoints").glob("*.pt")) if (run / "checkpoints").is_dir() else []
        if found:
            return found[0]
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before writing a checkpoint"
        time.sleep(0.02)
    raise AssertionError("no checkpoint was written")


def _moved_to_another_machine(checkpoint: Path) -> None:
    """The run's first attempt is said to have been on another CPU (as a checkpoint carried to another machine)."""
    machines = checkpoint.with_name(checkpoint.stem + ".machines.json")
    (attempt,) = json.loads(machines.read_text())
    assert attempt["from_epoch"] == 0 and attempt["device_name"] and attempt["host"]  # it trained from epoch 1
    machines.write_text(json.dumps([{**attempt, "device_name": "CPU: elsewhere", "cpu_capability": "AVX2"}]))


def _killed_and_rerun(tmp_path: Path, grid: Path, name: str, *options: str, between=None) -> Path:
    """A run killed (SIGKILL) as soon as its cell has written a checkpoint, then run again to the end
    (``between(checkpoint)`` before it is)."""
    run = tmp_path / name
    args = ["run", "--grid", str(grid), "--executor", "local", "--out", str(run), *options]
    with open(tmp_path / f"{name}.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "sepbench.cli", *args], cwd=tmp_path,
                                env={**os.environ, **ONE_THREAD}, stdout=log, stderr=subprocess.STDOUT)
    try:
        checkpoint = _wait_for_checkpoint(run, proc)
        os.kill(proc.pid, signal.SIGKILL)  # as a lost machine or the OOM killer: no chance to clean up
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert checkpoint.is_file() and not list((run / "cells").glob("*.json"))
    if between is not None:
        between(checkpoint)
    rerun = bench(*args, cwd=tmp_path, env=ONE_THREAD)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed from epoch" in rerun.stderr
    assert "1 cells, 1 of them resuming from their checkpoints" in rerun.stderr  # the estimate counts what is left
    return run


@pytest.mark.slow
def test_a_killed_run_resumes_its_cell_from_the_checkpoint_and_scores_as_an_uninterrupted_one(
        tmp_path: Path, write_grid) -> None:
    grid = write_grid(GRID)
    whole = bench("run", "--grid", str(grid), "--executor", "local", "--out", str(tmp_path / "whole"),
                  cwd=tmp_path, env=ONE_THREAD)
    assert whole.returncode == 0, whole.stderr
    assert not (tmp_path / "whole" / "checkpoints").exists()  # all cells done: nothing left behind
    reference = _record(tmp_path / "whole")
    assert "resumed_from_epoch" not in reference
    reference_rows = pd.read_parquet(next((tmp_path / "whole" / "cells").glob("*.parquet")))
    # in the driver's process, and in the child process that runs a cell with a time limit
    for run in (_killed_and_rerun(tmp_path, grid, "run", between=_moved_to_another_machine),
                _killed_and_rerun(tmp_path, grid, "limited", "--cell-timeout", "600")):
        record = _record(run)
        epoch, epochs = record["resumed_from_epoch"], GRID["train"]["epochs"]
        assert 1 <= epoch < epochs
        # which epochs ran where: the first attempt's machine up to the checkpoint, this one's after it
        elsewhere = run.name == "run"
        assert [(s["epochs"], s["device_name"], s["cpu_capability"]) for s in record["trained_on"]] == [
            ([1, epoch], "CPU: elsewhere" if elsewhere else record["device_name"],
             "AVX2" if elsewhere else record["cpu_capability"]),
            ([epoch + 1, epochs], record["device_name"], record["cpu_capability"])]
        assert leaderboard.cell_facts(record)["device_name"] == (
            f"CPU: elsewhere + {record['device_name']}" if elsewhere else record["device_name"])
        # the training time counts the epochs before the kill: the history's elapsed time at the resumed epoch
        before = record["history"][record["resumed_from_epoch"] - 1]["elapsed"]
        assert record["fit_seconds_before_resume"] == before > 0
        assert record["fit_seconds"] >= record["history"][-1]["elapsed"] and record["seconds"] >= record["fit_seconds"]
        assert record["mse"] == reference["mse"]
        assert [h["val_loss"] for h in record["history"]] == [h["val_loss"] for h in reference["history"]]
        rows = pd.read_parquet(next((run / "cells").glob("*.parquet")))
        assert rows["mse"].tolist() == reference_rows["mse"].tolist()
        assert not (run / "checkpoints").exists()  # deleted once the cell was recorded, the empty folder too
    report = bench("report", str(run), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    # a record written before the earlier epochs were counted (the last attempt's seconds only) is read with them
    path = next((run / "cells").glob("*.json"))
    legacy = {k: v for k, v in record.items() if k != "fit_seconds_before_resume"}
    legacy.update(fit_seconds=record["fit_seconds"] - before, seconds=record["seconds"] - before)
    path.write_text(json.dumps(legacy))
    read = RunStore(run).read_record(record["id"])
    assert read["fit_seconds_before_resume"] == before
    assert read["fit_seconds"] == pytest.approx(record["fit_seconds"])
    assert read["seconds"] == pytest.approx(record["seconds"])
    facts = leaderboard.cell_facts(read)
    assert facts["fit_core_seconds"] == pytest.approx(record["fit_seconds"] * record["threads"])


def test_checkpoints_of_cells_no_run_will_resume_are_deleted_and_the_folder_does_not_make_a_run_dir_foreign(
        tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    (store.root).mkdir()
    (store.root / ".lock").write_text("")
    assert store.checkpoint_folder() == store.checkpoints.absolute()
    assert foreign_dir_problem(store.root) is None  # a run killed before its manifest: still a run directory
    for cell_id in ("0123456789ab", "ba9876543210"):
        (store.checkpoints / f"{cell_id}.pt").write_bytes(b"x")
    (store.checkpoints / "notes.txt").write_text("mine")
    store.remove_checkpoint("0123456789ab")
    store.remove_checkpoint("../../escape")  # not a cell id: never a path
    assert sorted(p.name for p in store.checkpoints.iterdir()) == ["ba9876543210.pt", "notes.txt"]
    assert store.prune_checkpoints({"ba9876543210"}) == 0
    assert store.prune_checkpoints(set()) == 1
    assert [p.name for p in store.checkpoints.iterdir()] == ["notes.txt"]  # not ours: left alone
    (store.checkpoints / "notes.txt").unlink()
    store.prune_checkpoints(set())
    assert not store.checkpoints.exists()


def test_a_checkpoint_folder_that_cannot_be_made_means_no_checkpoints(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    store.root.mkdir()
    store.checkpoints.write_text("in the way")
    assert store.checkpoint_folder() is None
    store.remove_checkpoint("0123456789ab")  # never fails
    assert store.prune_checkpoints(set()) == 0
    assert checkpoint_file(store.checkpoints, "0123456789ab", logging.getLogger("test")) is None


def test_the_checkpoint_key_changes_with_provenance_and_precision() -> None:
    (cell,) = plan_grid(parse_grid({**TINY_GRID, **GRID})).cells
    origin = {"code": "a", "torch": "2", "device": "cpu"}
    key = checkpoint_key(cell, origin)
    assert key == checkpoint_key(cell, dict(origin))
    assert key != checkpoint_key(cell, {**origin, "code": "b"})
    assert key != checkpoint_key(cell, {**origin, "device": "cuda"})
    assert key != checkpoint_key(replace(cell, budget=replace(cell.budget, precision="bf16")), origin)


def test_the_runs_estimate_reads_how_many_epochs_a_cells_checkpoint_holds(tmp_path: Path) -> None:
    """What ``bench run`` counts a resumed cell's remaining work from: the epoch of a checkpoint the cell will
    resume (its key), 0 for none, another's or a damaged one."""
    (cell,) = plan_grid(parse_grid({**TINY_GRID, **GRID})).cells
    key = checkpoint_key(cell, provenance(get_method(cell.method), cell.data, "cpu"))
    path = tmp_path / f"{cell.id}.pt"
    assert checkpoint_epochs(tmp_path, cell, "cpu") == 0  # none yet
    saved = {"format": CHECKPOINT_FORMAT, "key": key, "epoch": 12, "epochs": GRID["train"]["epochs"],
             "net": {"w": torch.zeros(3)}, "optimiser": {}, "schedule": None, "best_loss": 0.5, "best_state": None,
             "history": [], "elapsed": 1.0, "rng": {}}
    torch.save(saved, path)
    assert checkpoint_epochs(tmp_path, cell, "cpu") == 12
    assert checkpoint_epochs(tmp_path, cell, "cuda") == 0  # made on another kind of device: the cell restarts
    assert checkpoint_epochs(tmp_path, cell, None) == 0  # the device is unknown (a cluster's): no guess
    torch.save({**saved, "key": "another"}, path)
    assert checkpoint_epochs(tmp_path, cell, "cpu") == 0
    torch.save({**saved, "epochs": 60}, path)  # another budget
    assert checkpoint_epochs(tmp_path, cell, "cpu") == 0
    path.write_bytes(b"truncated")
    assert checkpoint_epochs(tmp_path, cell, "cpu") == 0


def test_which_epochs_ran_where_is_read_back_from_the_last_attempt_to_the_first(tmp_path: Path) -> None:
    """An attempt's epochs are those its successors did not train again; another key's attempts (a checkpoint of
    other code, not resumed) and a missing or damaged file leave epochs unaccounted for, said as such."""
    checkpoint = tmp_path / "0123456789ab.pt"
    assert training_machines.read_attempts(checkpoint) == []
    here = {"device": "cpu", "device_name": "CPU: here", "host": "h", "threads": 1, "status": "not a machine field"}
    amd, intel = {**here, "device_name": "CPU: AMD"}, {**here, "device_name": "CPU: Intel"}
    for key, start, machine in (("old", 0, here), ("k", 0, amd), ("k", 3, intel), ("k", 5, amd), ("k", 5, intel)):
        training_machines.note_attempt(checkpoint, key, start, machine)
    attempts = training_machines.read_attempts(checkpoint)
    assert [(a["key"], a["from_epoch"], a["device_name"]) for a in attempts][-2:] == [("k", 5, "CPU: AMD"),
                                                                                    ("k", 5, "CPU: Intel")]
    assert "status" not in attempts[0] and attempts[0]["started"]
    spans = training_machines.trained_on(attempts, "k", 5, 8, here)  # the attempt from 5 on AMD trained nothing
    assert [(s["epochs"], s["device_name"]) for s in spans] == [([1, 3], "CPU: AMD"), ([4, 5], "CPU: Intel"),
                                                                ([6, 8], "CPU: here")]
    assert training_machines.machine_names({"device_name": "CPU: here", "trained_on": spans}) == (
        "CPU: AMD + CPU: Intel + CPU: here")
    assert training_machines.machine_names({"device_name": "CPU: here"}) == "CPU: here"
    unknown = training_machines.trained_on(attempts, "other key", 5, 8, here)
    assert [(s["epochs"], s["device_name"]) for s in unknown] == [([1, 5], None), ([6, 8], "CPU: here")]
    assert "not recorded" in unknown[0]["note"]
    assert training_machines.machine_names({"trained_on": unknown}) == "unrecorded + CPU: here"
    training_machines.attempts_file(checkpoint).write_text("{damaged")
    assert training_machines.read_attempts(checkpoint) == []
    training_machines.note_attempt(checkpoint, "k", 7, here)  # a damaged file is started again, never a crash
    assert [a["from_epoch"] for a in training_machines.read_attempts(checkpoint)] == [7]
    store = RunStore(tmp_path / "run")
    store.root.mkdir()
    store.checkpoint_folder()
    for name in ("0123456789ab.pt", "0123456789ab.machines.json", "ba9876543210.pt", "ba9876543210.machines.json"):
        (store.checkpoints / name).write_bytes(b"x")
    store.remove_checkpoint("0123456789ab")  # the machines go with their checkpoint
    assert sorted(p.name for p in store.checkpoints.iterdir()) == ["ba9876543210.machines.json", "ba9876543210.pt"]
    assert store.prune_checkpoints(set()) == 1 and not store.checkpoints.exists()
