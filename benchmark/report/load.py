"""Reading run directories for a report: rows of finished cells, cell metadata, what is missing or failed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sepbench.datasets import dataset_key_of
from sepbench.errors import UserError
from sepbench.integrity import CellFiles, damage
from sepbench.manifest import ManifestDamaged, shape_problems
from sepbench.store import ROW_COLUMNS, RunStore


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
    warnings: list[str] = field(default_factory=list)  # what could not be read (a line each, for stderr)

    @property
    def root(self) -> Path:
        return self.store.root

    def sources_key(self, cell_id: str) -> str:
        """Names the cell's test sources: the dataset(s), the number of test mixtures and the test pairs (the
        paper's test pairs are another test set than sepbench's seeded ones)."""
        config = self.meta[cell_id]["config"]
        specs = config["scenario"].get("sources") or [config["dataset"]]  # one set per source: all of them
        pairs = config.get("test_pairs", "random")
        return f"{'+'.join(dataset_key_of(spec) for spec in specs)}|{config['test_mixtures']}" + (
            "" if pairs == "random" else f"|{pairs}")

    def test_key(self, cell_id: str) -> str:
        """Names the cell's test mixtures: its test sources and the forward model that mixed them (weights,
        pooling, superposition, blur, noise model, σ): cells with equal keys were scored on the same observations,
        so only they are paired mixture by mixture (two runs may give one scenario name different models). A cell
        that records the digest of its test mixtures (``test_fingerprint``) adds it: only cells scored on
        byte-identical mixtures then pair, and an older cell without one never pairs with a newer cell."""
        config = self.meta[cell_id]["config"]
        forward = {k: v for k, v in config["scenario"].items() if k not in ("name", "sigma", "sigmas")}
        recipe = json.dumps({"forward": forward, "sigma": config["sigma"]}, sort_keys=True, default=str)
        key = f"{self.sources_key(cell_id)}|{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"
        printed = self.meta[cell_id].get("test_fingerprint")  # the mixtures' own digest, where the cell has one
        return f"{key}|{printed}" if printed else key

    def ceiling_key(self, cell_id: str) -> str:
        """The test sources and their number per mixture: what the ground truth's recognisability depends on."""
        return f"{self.sources_key(cell_id)}|S={len(self.meta[cell_id]['config']['scenario']['weights'][0])}"

    def dataset(self, cell_id: str) -> str:
        """The dataset a cell's sources come from, as the report names it (``mnist+fashion-mnist`` when each source
        comes from its own set)."""
        config = self.meta[cell_id]["config"]
        specs = config["scenario"].get("sources") or [config["dataset"]]
        return "+".join(dataset_label(spec) for spec in specs)


def dataset_label(spec: dict[str, Any]) -> str:
    """A dataset as tables and figures name it: its name, with its options when it has any
    (``natural-patches[patch=16]``); the sizes are in the page's header."""
    return dataset_key_of(spec).rsplit(":", 2)[0]


def setting_name(scenario: str, dataset: str, several: bool) -> str:
    """What tables and figures call a scenario: ``single · mnist`` when the report spans several datasets (a
    scenario named after its dataset keeps its one name)."""
    return f"{scenario} · {dataset}" if several and scenario != dataset else scenario


def one_line(value: Any, limit: int = 300) -> str:
    """A cell's error as one line of at most ``limit`` characters."""
    text = (str(value).strip().splitlines() or ["unknown error"])[0]
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _manifest(store: RunStore, warnings: list[str]) -> dict[str, Any]:
    """The manifest with every key of the wrong shape dropped (a warning each); without a usable list of cells,
    the cells are those the records in cells/ describe."""
    where = f"{store.root}/manifest.json"
    try:
        manifest = dict(store.read_manifest())  # no manifest at all: not a run directory (UserError)
    except ManifestDamaged as exc:
        warnings.append(f"{where}: {exc}: reporting the cells recorded in cells/")
        manifest = {}
    problems = shape_problems(manifest) if manifest else {}
    if problems:
        after = "left out" + ("; reporting the cells recorded in cells/" if "cells" in problems else "")
        warnings.append(f"{where}: " + "; ".join(f"{key}: {why}" for key, why in problems.items()) + f": {after}")
    for key in problems:
        manifest.pop(key, None)
    return manifest


def _recorded_cells(store: RunStore) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Without a manifest's list: (an entry for each record in cells/ that names its cell, the other records)."""
    cells, unknown = [], []
    for cell_id in store.recorded_ids():
        try:
            config = store.read_record(cell_id)["config"]
        except ValueError:
            config = None
        if config is None:
            unknown.append({"id": cell_id, "label": "?", "method": "?", "scenario": "?", "sigma": None, "seed": None})
        else:
            cells.append({"id": cell_id, "label": config["label"], "method": config["method"],
                          "scenario": config["scenario"]["name"], "sigma": config["sigma"], "seed": config["seed"]})
    return cells, unknown


def _rows(store: RunStore, cell_id: str) -> pd.DataFrame:
    """A done cell's rows; ValueError if they are not the rows of this cell."""
    try:
        frame = pd.read_parquet(store.cells / f"{cell_id}.parquet")
    except Exception as exc:  # noqa: BLE001 — whatever the reader raises, the file cannot be used
        raise ValueError(f"{cell_id}.parquet cannot be read ({type(exc).__name__})") from None
    lacking = [c for c in ROW_COLUMNS if c not in frame]
    if lacking:
        raise ValueError(f"{cell_id}.parquet lacks the columns {', '.join(lacking)}")
    if set(frame["cell"]) - {cell_id}:
        raise ValueError(f"{cell_id}.parquet holds rows of another cell")
    return frame


def load_run(run_dir: str | Path, name: str | None = None) -> RunData:
    """Read one run directory; bad input (absent, not a run, no cell finished or failed) raises a UserError. What
    cannot be read (the manifest, a cell's files) is left out and said in ``warnings``, never trusted."""
    store = RunStore(run_dir)
    if not store.root.exists():
        raise UserError(f"{store.root}: no such run directory")
    if not store.root.is_dir():
        raise UserError(f"{store.root}: not a run directory (a file)")
    warnings: list[str] = []
    manifest = _manifest(store, warnings)
    unknown: list[dict[str, Any]] = []
    if "cells" not in manifest:
        manifest["cells"], unknown = _recorded_cells(store)
    planned = manifest["cells"]
    if store.cells.exists() and not store.cells.is_dir():
        warnings.append(f"{store.cells}: not a folder: no cell can be read")
    warnings += [f"{store.cells}/{name}: not a cell record (a cell id is 12 hex digits): left out"
                 for name in store.foreign_records()]
    meta: dict[str, dict[str, Any]] = {}
    failed, missing = [], []
    damaged = [{**cell, "error": damage(CellFiles.of(store.root, cell["id"]))} for cell in unknown]
    for cell in planned:
        status = store.cell_status(cell["id"])
        try:
            if status == "done":
                meta[cell["id"]] = store.read_record(cell["id"])
            elif status == "failed":
                info = store.read_record(cell["id"])
                failed.append({**cell, "error": one_line(info.get("error", "unknown error"))})
            elif status == "damaged":
                damaged.append({**cell, "error": damage(CellFiles.of(store.root, cell["id"]))})
            else:
                missing.append(cell)
        except ValueError as exc:  # changed between the check and the read
            damaged.append({**cell, "error": f"{cell['id']}.json: {exc}"})
    frames = []
    for cell_id in list(meta):
        try:
            frames.append(_rows(store, cell_id))
        except ValueError as exc:
            del meta[cell_id]
            damaged.append({**next(c for c in planned if c["id"] == cell_id), "error": str(exc)})
    if not frames and not failed:
        raise UserError(f"{store.root}: no finished cell to report on ({len(planned)} planned, "
                        f"{len(failed)} failed, {len(damaged)} damaged)" + (f"; {warnings[0]}" if warnings else ""))
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ROW_COLUMNS)
    run = RunData(name or store.root.resolve().name, store, manifest, rows, meta, failed, missing, damaged, warnings)
    rows["run"] = run.name
    rows["testset"] = rows["cell"].map({cell_id: run.test_key(cell_id) for cell_id in meta})
    rows["dataset"] = rows["cell"].map({cell_id: run.dataset(cell_id) for cell_id in meta})
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
    """All rows of all runs, with ``entry``: the method label, prefixed by the run when several are compared; when
    the rows span several datasets, each scenario is named with its dataset (``single · mnist``)."""
    rows = pd.concat([r.rows for r in runs], ignore_index=True)
    rows["entry"] = entry_names(rows, several=len(runs) > 1)
    if several_datasets(runs):
        named = rows["scenario"] != rows["dataset"]  # a scenario named after its dataset says it already
        rows.loc[named, "scenario"] = rows.loc[named, "scenario"] + " · " + rows.loc[named, "dataset"]
    return rows


def datasets_of(runs: Sequence[RunData]) -> dict[str, dict[str, Any]]:
    """Every dataset the runs' finished cells use (label → one cell's dataset spec), in the order first met."""
    found: dict[str, dict[str, Any]] = {}
    for run in runs:
        for meta in run.meta.values():
            config = meta["config"]
            for spec in config["scenario"].get("sources") or [config["dataset"]]:  # each set of a `sources:` one
                found.setdefault(dataset_label(spec), spec)
    return found


def several_datasets(runs: Sequence[RunData]) -> bool:
    """Whether the runs' finished cells span more than one dataset (then scenarios are named with theirs)."""
    return len(datasets_of(runs)) > 1


def entry_names(frame: pd.DataFrame, several: bool) -> pd.Series:
    """What the report calls each row's method entry: its label, as ``run: label`` when several runs are compared."""
    return frame["run"] + ": " + frame["label"] if several else frame["label"]


def entry_order(rows: pd.DataFrame) -> list[str]:
    """Entries in a stable order: runs as given, methods as first seen in each run (the grid's order)."""
    return list(dict.fromkeys(rows["entry"]))
