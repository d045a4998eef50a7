"""Which committed cells to rerun (named, or a seeded sample that spreads over entries) and the cells rebuilt.

A cell is rebuilt from its own record's configuration through the grid parser and the planner, as ``bench run``
builds it: a one-cell grid with the run's plugins. The rebuilt cell's id says whether that reproduced it exactly.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sepbench.errors import UserError
from sepbench.grid import parse_grid
from sepbench.plan import Cell, plan_grid
from sepbench.resume import config_changes
from sepbench.store import RunStore


@dataclass(frozen=True)
class Committed:
    """A finished cell of the run: its id, its record, and where it sits (label, scenario, σ, seed)."""

    cell_id: str
    record: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return self.record.get("config") or {}

    def describe(self) -> str:
        config = self.config
        return (f"{config.get('label')} · {(config.get('scenario') or {}).get('name')} · σ={config.get('sigma'):g} · "
                f"seed {config.get('seed')}")


def finished_cells(store: RunStore) -> tuple[list[str], list[tuple[str, str]]]:
    """The ids of the manifest's cells that finished intact, and (id, why) for each of its damaged ones."""
    try:
        planned = store.read_manifest().get("cells") or []
    except ValueError as exc:  # a manifest that cannot be read
        raise UserError(f"{store.root}/manifest.json: {exc}") from None
    done, damaged = [], []
    for entry in planned:
        cell_id = entry.get("id") if isinstance(entry, dict) else None
        status = store.cell_status(cell_id) if isinstance(cell_id, str) else None
        if status == "done":
            done.append(cell_id)
        elif status == "damaged":
            damaged.append((cell_id, _damage(store, cell_id)))
    return done, damaged


def _damage(store: RunStore, cell_id: str) -> str:
    from sepbench.integrity import CellFiles, damage

    return damage(CellFiles.of(store.root, cell_id)) or "damaged"


def choose(store: RunStore, count: int | None, named: tuple[str, ...], seed: int) -> list[Committed]:
    """The cells to rerun: ``named`` ids (each a finished cell of the run), else ``count`` finished cells at random
    (seeded by ``seed``), one per entry (label) before any entry gets a second."""
    if named and count is not None:
        raise UserError("--cells and --cell: give one of them (a number of cells at random, or the cells' ids)")
    if count is not None and count < 1:
        raise UserError(f"--cells: expected a number of cells ≥ 1, got {count}")
    done, _ = finished_cells(store)
    if named:
        chosen = []
        for cell_id in dict.fromkeys(named):
            status = store.cell_status(cell_id) if _is_id(cell_id) else None
            if status is None:
                raise UserError(f"{store.root}: no cell {cell_id!r} (a cell id is 12 hex digits: cells/<id>.json)")
            if status != "done":
                raise UserError(f"{store.root}: cell {cell_id} has not finished intact ({status}): nothing to verify")
            chosen.append(cell_id)
    else:
        if not done:
            raise UserError(f"{store.root}: no finished cell to verify")
        chosen = _stratified(done, store, 3 if count is None else count, seed)
    return [Committed(cell_id, store.read_record(cell_id)) for cell_id in chosen]


def _is_id(text: str) -> bool:
    from sepbench.integrity import is_cell_id

    return is_cell_id(text)


def _stratified(done: list[str], store: RunStore, count: int, seed: int) -> list[str]:
    """``count`` of ``done`` at random: every entry once (in random order) before any twice."""
    rng = random.Random(seed)
    by_label: dict[str, list[str]] = defaultdict(list)
    for cell_id in done:
        by_label[str((store.read_record(cell_id).get("config") or {}).get("label"))].append(cell_id)
    pools = [rng.sample(ids, len(ids)) for _, ids in sorted(by_label.items())]
    rng.shuffle(pools)
    chosen: list[str] = []
    while len(chosen) < min(count, len(done)):
        for pool in pools:
            if pool and len(chosen) < count:
                chosen.append(pool.pop())
    return chosen


def rebuild(committed: Committed, run: Path) -> tuple[Cell, list[str]]:
    """The cell a committed record describes, built as ``bench run`` builds cells, and notes where the rebuilt
    configuration differs from the recorded one (a default changed since, other data here)."""
    config = committed.config
    scenario = dict(config.get("scenario") or {})
    name = scenario.pop("name", "scenario")
    entry: dict[str, Any] = {"method": config.get("method"), "label": config.get("label"),
                             "params": config.get("params") or {}}
    grid: dict[str, Any] = {
        "name": "verify", "dataset": config.get("dataset"), "scenarios": {name: scenario},
        "noise": [config.get("sigma")], "seeds": [config.get("seed")], "methods": [entry],
        "test": {"mixtures": config.get("test_mixtures"),
                 **({"pairs": config["test_pairs"]} if "test_pairs" in config else {})},
        "plugins": _plugins(run),
    }
    if config.get("budget"):
        grid["train"] = dict(config["budget"])
    source = f"{run}/cells/{committed.cell_id}.json"
    cells = plan_grid(parse_grid(grid, source=source)).cells
    if len(cells) != 1:
        raise UserError(f"{source}: its method {config.get('method')!r} no longer serves its scenario {name!r}")
    cell = cells[0]
    if cell.id == committed.cell_id:
        return cell, []
    return cell, config_changes(config, cell.config(), set()) or [
        f"rebuilt as cell {cell.id}: the committed id does not match the record's own configuration (the record was "
        "edited, or sepbench's cell format changed)"]


def _plugins(run: Path) -> list[str]:
    """The plugins the run's grid names (imported before its methods are looked up)."""
    try:
        grid = yaml.safe_load((run / "grid.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return []
    plugins = grid.get("plugins") if isinstance(grid, dict) else None
    return [p for p in plugins if isinstance(p, str)] if isinstance(plugins, list) else []
