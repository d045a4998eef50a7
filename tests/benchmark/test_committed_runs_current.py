"""The committed runs that the README's and the leaderboard's numbers come from are what today's code produces: no
cell of theirs is stale (its method's code, sepbench's or torch's version changed since it ran), and the large
track's committed checkpoints still resume. An edit to a method's code (or to a module of ``sepbench.methods`` /
``sepbench.datasets`` it builds on) makes its committed cells stale; this test then says which, and the run has to be
rebuilt (``bench run --grid ... --out reports/...``) — or the edit waits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sepbench.cell import checkpoint_epochs
from sepbench.grid import load_grid
from sepbench.plan import plan_grid
from sepbench.provenance import changes, provenance
from sepbench.registry import get_method
from sepbench.training_machines import read_attempts, trained_on

ROOT = Path(__file__).resolve().parents[2]
CURRENT = ["reports/leaderboard/small", "reports/leaderboard/large", "reports/quick", "reports/datasets"]


@pytest.mark.parametrize("run", CURRENT)
def test_every_recorded_cell_of_a_committed_run_is_current(run: str) -> None:
    root = ROOT / run
    plan = plan_grid(load_grid(str(root / "grid.yaml")))
    stale, done = {}, 0
    for cell in plan.cells:
        path = root / "cells" / f"{cell.id}.json"
        if not path.is_file():
            continue
        record = json.loads(path.read_text())
        if record.get("status") != "done":
            continue
        done += 1
        origin = record["provenance"]
        why = changes(origin, provenance(get_method(cell.method), cell.data, origin.get("device")))
        if why:
            stale[f"{cell.label} {cell.scenario.name} seed {cell.seed}"] = why
    assert done > 0
    assert not stale, f"{len(stale)} of {done} cells of {run} are stale under this code: {stale}"


def test_the_large_tracks_committed_checkpoints_resume() -> None:
    """A checkpoint of an unfinished large-track cell is committed so that the next machine resumes it; one whose
    key no longer matches (other code) would silently restart the cell from epoch 1."""
    root = ROOT / "reports" / "leaderboard" / "large"
    by_id = {cell.id: cell for cell in plan_grid(load_grid(str(root / "grid.yaml"))).cells}
    for path in sorted((root / "checkpoints").glob("*.pt")):
        cell = by_id[path.stem]
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"]
        assert not (root / "cells" / f"{cell.id}.json").is_file()  # a finished cell's checkpoint is deleted
        assert checkpoint_epochs(root / "checkpoints", cell, "cpu") == saved >= 1, path.name
        # and which machine trained each of its epochs: the record of the cell that resumes it will say so
        key = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["key"]
        spans = trained_on(read_attempts(path), key, saved, saved, {})
        assert [s["epochs"][0] for s in spans][0] == 1 and all(s["device_name"] for s in spans), (path.name, spans)
