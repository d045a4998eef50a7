"""Resuming into an existing run directory: what is reused, rerun, set aside, or kept out of the grid.

A planned cell is reused only when its files are intact and what produced it (:mod:`sepbench.provenance`) is
what would produce it now; otherwise it runs (or, with ``--keep-stale``, is kept and marked). Damaged cells
are moved aside; cells an earlier version of the grid named are kept but are not part of this grid.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from sepbench.integrity import ensure_folders, set_aside
from sepbench.manifest import ManifestDamaged, read_manifest, shape_problems
from sepbench.models.files import model_problem
from sepbench.plan import Cell, Plan
from sepbench.provenance import changes, provenance
from sepbench.registry import get_method
from sepbench.store import RunStore


@dataclass
class Triage:
    pending: list[Cell] = field(default_factory=list)
    reused: list[Cell] = field(default_factory=list)
    stale: dict[str, list[str]] = field(default_factory=dict)  # cell id → why (rerun, or kept with --keep-stale)
    damaged: list[tuple[str, str]] = field(default_factory=list)  # (cell id, why), moved to cells/damaged/
    not_in_grid: list[dict[str, Any]] = field(default_factory=list)  # cells of an earlier grid version
    need_model: dict[str, str] = field(default_factory=dict)  # cell id → why: done, but its kept model is asked for
    notes: list[str] = field(default_factory=list)  # folders set aside, files that are not cell records
    unfingerprinted: list[Cell] = field(default_factory=list)  # reused, recorded before cells had test_fingerprint


def triage(plan: Plan, store: RunStore, *, keep_stale: bool, device_kind: Any,
           explicit: Mapping[str, Iterable[str]] | None = None) -> Triage:
    """Sort the plan's cells into pending and reused; ``device_kind(cell)`` is the device kind it would get
    now (None: unknown, e.g. a remote cluster, and not compared). ``explicit``: per label, the parameters the
    grid sets (the others come from the method's defaults), to say why a recorded cell left the grid."""
    notes = ensure_folders(store.root)
    notes += [f"  not a cell record: cells/{name} (a cell id is 12 hex digits): left alone, not read"
              for name in store.foreign_records()]
    out = Triage(damaged=store.set_aside_damaged(), notes=notes)
    planned = {c.id for c in plan.cells}
    for cell in plan.cells:
        if store.cell_status(cell.id) != "done":
            out.pending.append(cell)
            continue
        record = store.read_record(cell.id)
        current = provenance(get_method(cell.method), cell.data, device_kind(cell))
        reasons = changes(record.get("provenance"), current)
        if reasons:
            out.stale[cell.id] = reasons
        missing = model_problem(store.root, cell.id, record) if cell.keep_model else None
        if missing:  # its scores are fine, but the fitted method is asked for and only training makes it
            out.need_model[cell.id] = missing
        reuse = (keep_stale or not reasons) and not missing
        (out.reused if reuse else out.pending).append(cell)
        if reuse and not record.get("test_fingerprint"):
            out.unfingerprinted.append(cell)
    by_place = {_place(c.config()): c for c in plan.cells}
    for cell_id in store.recorded_ids():
        if cell_id not in planned and store.cell_status(cell_id) in ("done", "failed"):
            config = store.read_record(cell_id).get("config") or {}
            entry = {"id": cell_id, "label": config.get("label"), "method": config.get("method"),
                     "scenario": (config.get("scenario") or {}).get("name"), "sigma": config.get("sigma"),
                     "seed": config.get("seed")}
            twin = by_place.get(_place(config))
            if twin is not None:  # the grid still names this place: what else differs
                set_here = set((explicit or {}).get(twin.label, ()))
                entry["changed"] = config_changes(config, twin.config(), set_here) or ["its configuration"]
            out.not_in_grid.append(entry)
    return out


def _place(config: Mapping[str, Any]) -> tuple[Any, ...]:
    """Where a cell sits in a grid: label, scenario name, σ, seed (what stays when a setting changes)."""
    return (config.get("label"), (config.get("scenario") or {}).get("name"), config.get("sigma"), config.get("seed"))


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any], explicit: set[str]) -> list[str]:
    """What differs between a recorded cell's configuration and the planned one at the same place, in words:
    a parameter's default (the grid does not set it) or the grid's value, the budget, the data, …"""
    found = []
    old_params, new_params = old.get("params") or {}, new.get("params") or {}
    for key in sorted(set(old_params) | set(new_params)):
        before, after = old_params.get(key, "unset"), new_params.get(key, "unset")
        if before != after:
            why = "set in the grid" if key in explicit else "the method's default changed; the grid does not set it"
            found.append(f"parameter {key} {before!r} → {after!r} ({why})")
    for key in sorted((set(old) | set(new)) - {"params", "label"}):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            found += [f"{key} {part} {before.get(part)!r} → {after.get(part)!r}"
                      for part in sorted(set(before) | set(after)) if before.get(part) != after.get(part)]
        else:
            found.append(WHAT.get(key, key) + f" {before!r} → {after!r}")
    return found


WHAT = {"format": "sepbench's cell format", "data": "the source images' fingerprint", "method": "method"}


def describe(found: Triage, plan: Plan, keep_stale: bool) -> list[str]:
    """Lines for the terminal: each damaged cell, stale cells grouped by method and reason, cells out of the grid."""
    lines = list(found.notes)
    lines += [f"  damaged: cell {cell_id} ({why}): moved to cells/damaged/, recomputed if the grid names it"
              for cell_id, why in found.damaged]
    groups: dict[tuple[str, str], int] = defaultdict(int)
    by_id = {c.id: c for c in plan.cells}
    for cell_id, reasons in found.stale.items():
        groups[(by_id[cell_id].label, "; ".join(reasons))] += 1
    action = "kept and marked stale (--keep-stale)" if keep_stale else "rerun (--keep-stale keeps them)"
    for (label, why), count in groups.items():
        lines.append(f"  stale: {count} cell(s) of {label}: {why}: {action}")
    models: dict[tuple[str, str], int] = defaultdict(int)
    for cell_id, why in found.need_model.items():
        models[(by_id[cell_id].label, why)] += 1
    for (label, why), count in models.items():
        lines.append(f"  model: {count} finished cell(s) of {label}: {why}, and models are asked for: rerun")
    changed: dict[tuple[str, str], int] = defaultdict(int)
    for cell in found.not_in_grid:
        if cell.get("changed"):
            changed[(str(cell["label"]), "; ".join(cell["changed"]))] += 1
    for (label, why), count in changed.items():
        lines.append(f"  {count} earlier cell(s) of {label} no longer match the plan: {why}: run again under the "
                     "new settings; the old ones are kept but not part of this grid (listed in manifest.json)")
    if found.unfingerprinted and found.pending:
        labels = ", ".join(dict.fromkeys(c.label for c in found.unfingerprinted))
        lines.append(f"  {len(found.unfingerprinted)} finished cell(s) of {labels} were recorded before cells "
                     "carried the digest of their test mixtures (test_fingerprint): reports will not pair them with "
                     "the cells run now; to remake them, move their cells/<id>.json and .parquet out of the run")
    dropped = sum(1 for cell in found.not_in_grid if not cell.get("changed"))
    if dropped:
        lines.append(f"  {dropped} cell(s) of an earlier version of the grid are kept but not part of "
                     "this grid (listed in manifest.json, left out of the report)")
    return lines


def grid_digest(resolved: dict[str, Any]) -> str:
    return hashlib.sha256(yaml.safe_dump(resolved, sort_keys=True).encode()).hexdigest()[:16]


def grid_history(previous: dict[str, Any] | None, resolved: dict[str, Any], started: str) -> list[dict[str, Any]]:
    """The manifest's history of grid versions, with this run's grid last (a new entry only when it changed)."""
    history = list((previous or {}).get("history") or [])
    if previous and not history and isinstance(previous.get("cells"), list):  # written before history was kept
        history.append({"grid_sha256": None, "grid": None, "first_run": previous.get("started"),
                        "last_run": previous.get("started"), "cells": len(previous["cells"])})
    digest = grid_digest(resolved)
    if history and history[-1].get("grid_sha256") == digest:
        history[-1] = {**history[-1], "last_run": started}
    else:
        history.append({"grid_sha256": digest, "grid": resolved, "first_run": started, "last_run": started})
    return history


def read_previous_manifest(store: RunStore) -> tuple[dict[str, Any] | None, str | None]:
    """The manifest an earlier run left, or None; one that cannot be read, or whose keys have the wrong shape,
    is moved aside (never deleted), and the second value says so in a line."""
    path = store.root / "manifest.json"
    try:
        manifest = read_manifest(path)
        problems = shape_problems(manifest) if manifest is not None else {}
        if not problems:
            return manifest, None
        why = "; ".join(f"{key}: {problem}" for key, problem in problems.items())
    except ManifestDamaged as exc:
        why = str(exc)
    aside = set_aside(path)
    return None, f"  damaged: manifest.json ({why}): moved to {aside.name}; the grid history restarts"
