"""The manifest of a run directory as read back from disk: never trusted, checked key by key.

A run sets aside a manifest it cannot use whole (and starts the grid history anew); a report drops the keys of the
wrong shape and, without a usable list of cells, reports from the cell records instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sepbench.errors import short
from sepbench.files import read_json_file
from sepbench.integrity import is_cell_id

MAX_BYTES = 64 * 2**20  # a manifest lists cells and grid versions: far below this


class ManifestDamaged(ValueError):
    """A manifest.json that exists but cannot be read as a JSON object."""


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest at ``path`` as a JSON object, None if there is none; ManifestDamaged says why it cannot be read."""
    if not path.exists() and not path.is_symlink():
        return None
    try:
        data = read_json_file(path, MAX_BYTES)
    except ValueError as exc:
        raise ManifestDamaged(str(exc)) from None
    if not isinstance(data, dict):
        raise ManifestDamaged(f"not a JSON object ({type(data).__name__})")
    return data


def _planned_problem(cells: Any) -> str | None:
    if not isinstance(cells, list):
        return f"not a list ({type(cells).__name__})"
    for cell in cells:
        if not isinstance(cell, dict) or not is_cell_id(cell.get("id")):
            return f"an entry without a valid cell id ({_short(cell)})"
        if not (isinstance(cell.get("label"), str) and isinstance(cell.get("scenario"), str)
                and isinstance(cell.get("sigma"), int | float) and isinstance(cell.get("seed"), int)):
            return f"cell {cell['id']} lacks its label, scenario, σ or seed"
    return None


def _listed_problem(items: Any, keys: tuple[str, ...] = ("id",)) -> str | None:
    if not isinstance(items, list):
        return f"not a list ({type(items).__name__})"
    for item in items:
        if not isinstance(item, dict) or any(k not in item for k in keys):
            return f"an entry without {', '.join(keys)} ({_short(item)})"
        if "id" in keys and not is_cell_id(item["id"]):
            return f"an invalid cell id ({_short(item['id'])})"
    return None


def _stale_problem(stale: Any) -> str | None:
    if not isinstance(stale, dict):
        return f"not an object ({type(stale).__name__})"
    for cell_id, why in stale.items():
        if not is_cell_id(cell_id):
            return f"an invalid cell id ({_short(cell_id)})"
        if not isinstance(why, list) or not all(isinstance(w, str) for w in why):
            return f"cell {cell_id}: reasons are not a list of text"
    return None


CHECKS = {
    "cells": _planned_problem,
    "history": lambda v: _listed_problem(v, ()),
    "damaged": lambda v: _listed_problem(v, ()),
    "not_in_grid": _listed_problem,
    "skipped": lambda v: _listed_problem(v, ("label", "scenario", "reason")),
    "stale_kept": _stale_problem,
    "versions": lambda v: None if isinstance(v, dict) else f"not an object ({type(v).__name__})",
}


def shape_problems(manifest: dict[str, Any]) -> dict[str, str]:
    """Key → why its value has the wrong shape, for the keys sepbench reads (empty: the manifest is usable)."""
    found = {}
    for key, check in CHECKS.items():
        if key in manifest and manifest[key] is not None and (why := check(manifest[key])) is not None:
            found[key] = why
    if "cells" not in manifest:
        found["cells"] = "missing"
    return found


def _short(value: Any) -> str:
    return short(value, 40)
