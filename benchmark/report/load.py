"""Reading run directories for a report: rows of finished cells, cell metadata, what is missing or failed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sepbench.datasets import dataset_key
from sepbench.errors import UserError
from sepbench.integrity import CellFiles, damage
from sepbench.store import RunStore


@dataclass
class RunData:
    """One run as the report sees it. ``rows`` hold only cells the manifest plans (stale ones are ignored)."""

    name: str
    store: RunStore
    manifest: dict[str, Any]
    rows: pd.DataFrame
    meta: dict[str, dict[str, Any]]  # cell id → the cell's json (done cells)
    failed: list[dict[str, Any]] = field(default_factory=list)  # planned cell + its error
    missing: list[dict[str, Any]] = field(default_factory=list)  # planned cells with no result yet
    damaged: list[dict[str, Any]] = field(default_factory=list)  # planned cells whose files are damaged

    @property
    def root(self) -> Path:
        return self.store.root

    def test_key(self, cell_id: str) -> str:
        """Names the cell's test set: cells with equal keys were scored on the same test mixtures."""
        config = self.meta[cell_id]["config"]
        spec = config["dataset"]
        return f"{dataset_key(spec['name'], spec['train_size'], spec['test_size'])}|{config['test_mixtures']}"


def load_run(run_dir: str | Path, name: str | None = None) -> RunData:
    """Read one run directory; bad input (absent, not a run, nothing finished) raises a UserError."""
    store = RunStore(run_dir)
    if not store.root.exists():
        raise UserError(f"{store.root}: no such run directory")
    if not store.root.is_dir():
        raise UserError(f"{store.root}: not a run directory (a file)")
    try:
        manifest = store.read_manifest()
    except json.JSONDecodeError as exc:
        raise UserError(f"{store.root}/manifest.json: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except ValueError:
        raise UserError(f"{store.root}/manifest.json: not valid JSON (not UTF-8 text)") from None
    planned = manifest.get("cells") if isinstance(manifest, dict) else None
    if not isinstance(planned, list) or not all(isinstance(c, dict) and "id" in c for c in planned):
        raise UserError(f"{store.root}/manifest.json: not a run manifest (no list of cells)")
    meta: dict[str, dict[str, Any]] = {}
    failed, missing, damaged = [], [], []
    for cell in planned:
        status = store.cell_status(cell["id"])
        if status == "done":
            meta[cell["id"]] = store.read_record(cell["id"])
        elif status == "failed":
            info = store.read_record(cell["id"])
            failed.append({**cell, "error": info.get("error", "unknown error")})
        elif status == "damaged":
            damaged.append({**cell, "error": damage(CellFiles.of(store.root, cell["id"]))})
        else:
            missing.append(cell)
    frames = [pd.read_parquet(store.cells / f"{cell_id}.parquet") for cell_id in meta]
    if not frames:
        raise UserError(f"{store.root}: no finished cell to report on ({len(planned)} planned, "
                        f"{len(failed)} failed, {len(damaged)} damaged)")
    rows = pd.concat(frames, ignore_index=True)
    run = RunData(name or store.root.resolve().name, store, manifest, rows, meta, failed, missing, damaged)
    rows["run"] = run.name
    rows["testset"] = rows["cell"].map({cell_id: run.test_key(cell_id) for cell_id in meta})
    if "recognised" not in rows:
        rows["recognised"] = np.nan
    rows["recognised"] = rows["recognised"].astype(float)
    return run


def load_runs(run_dirs: Sequence[str | Path]) -> list[RunData]:
    """Several runs, each named by its directory (made unique with a suffix when two share a name)."""
    names: list[str] = []
    for run_dir in run_dirs:
        base = Path(run_dir).resolve().name or "run"
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return [load_run(d, n) for d, n in zip(run_dirs, names, strict=True)]


def combine(runs: Sequence[RunData]) -> pd.DataFrame:
    """All rows of all runs, with ``entry``: the method label, prefixed by the run when several are compared."""
    rows = pd.concat([r.rows for r in runs], ignore_index=True)
    rows["entry"] = entry_names(rows, several=len(runs) > 1)
    return rows


def entry_names(frame: pd.DataFrame, several: bool) -> pd.Series:
    """What the report calls each row's method entry: its label, as ``run: label`` when several runs are compared."""
    return frame["run"] + ": " + frame["label"] if several else frame["label"]


def entry_order(rows: pd.DataFrame) -> list[str]:
    """Entries in a stable order: runs as given, methods as first seen in each run (the grid's order)."""
    return list(dict.fromkeys(rows["entry"]))
