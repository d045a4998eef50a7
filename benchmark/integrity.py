"""Damaged cell files: detected (checksums recorded at write time, else a full read), reported, moved aside.

A cell's record lists the SHA-256 of its rows and examples files (``files``); a file that does not match, cannot
be read, or is missing where the record says it was written makes the cell damaged. A damaged cell is moved to
``cells/damaged/`` (never deleted) and counts as absent: the next run recomputes it.
"""

from __future__ import annotations

import hashlib
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from sepbench.files import read_json_file
from sepbench.record_times import count_time_before_resume

DAMAGED_DIR = "damaged"
CELL_ID = re.compile(r"[0-9a-f]{12}")  # sepbench.plan.Cell.id: the first 12 hex digits of a SHA-256
MAX_RECORD_BYTES = 64 * 2**20  # a record holds a config, timings and a training history: far below this


def is_cell_id(value: object) -> bool:
    """Whether ``value`` has the form of a cell id; anything else read back from disk is never used as a path."""
    return isinstance(value, str) and CELL_ID.fullmatch(value) is not None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class CellFiles:
    """The files of one cell in a run directory."""

    meta: Path
    rows: Path
    examples: Path

    @classmethod
    def of(cls, root: Path, cell_id: str) -> CellFiles:
        if not is_cell_id(cell_id):  # callers check first; a path is never built from anything else
            raise ValueError(f"not a cell id: {cell_id!r:.40}")
        return cls(root / "cells" / f"{cell_id}.json", root / "cells" / f"{cell_id}.parquet",
                   root / "examples" / f"{cell_id}.npz")


def read_record(path: Path) -> dict[str, Any]:
    """A cell's JSON record; ValueError says why it is not one (unreadable, not JSON, not of a record's shape)."""
    record = read_json_file(path, MAX_RECORD_BYTES)
    if not isinstance(record, dict) or record.get("status") not in ("done", "failed"):
        raise ValueError("not a cell record (no status)")
    why = record_problem(record)
    if why is not None:
        raise ValueError(f"not a cell record ({why})")
    return count_time_before_resume(record)


_CONFIG_TYPES = {"method": str, "label": str, "sigma": int | float, "seed": int, "test_mixtures": int}


def record_problem(record: dict[str, Any]) -> str | None:
    """Why a record cannot be used (what a rerun and a report read from it), or None."""
    config = record.get("config")
    if not isinstance(config, dict):
        return "no config"
    for key, kind in _CONFIG_TYPES.items():
        if not isinstance(config.get(key), kind) or isinstance(config.get(key), bool):
            return f"config has no valid {key}"
    spec, scenario = config.get("dataset"), config.get("scenario")
    if not (isinstance(spec, dict) and isinstance(spec.get("name"), str)
            and all(isinstance(spec.get(k), int) for k in ("train_size", "test_size"))):
        return "config has no valid dataset"
    if not (isinstance(scenario, dict) and isinstance(scenario.get("name"), str)
            and isinstance(scenario.get("weights"), list) and scenario["weights"]
            and isinstance(scenario["weights"][0], list)):
        return "config has no valid scenario"
    files, origin, history = record.get("files"), record.get("provenance"), record.get("history")
    if files is not None and not (isinstance(files, dict) and all(isinstance(v, str) for v in files.values())):
        return "files is not a map of checksums"
    if origin is not None and not isinstance(origin, dict):
        return "provenance is not an object"
    if history is not None and not (isinstance(history, list) and all(
            isinstance(h, dict) and isinstance(h.get("epoch"), int) and "val_loss" in h for h in history)):
        return "history is not a list of epochs"
    return None


def _check_file(path: Path, recorded: str | None, kind: str) -> str | None:
    """Why ``path`` is damaged (None: intact). Without a recorded checksum (older runs), read it whole."""
    if not path.is_file():
        return f"{path.name} is missing" if not path.exists() else f"{path.name} is not a regular file"
    try:
        if recorded is not None:
            same = sha256_bytes(path.read_bytes()) == recorded
            return None if same else f"{path.name} does not match its checksum"
        if kind == "rows":
            pq.read_table(path)
        else:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            if bad is not None:
                return f"{path.name}: {bad} is corrupt"
    except OSError as exc:
        return f"{path.name} cannot be read ({exc.strerror or type(exc).__name__})"
    except Exception as exc:  # noqa: BLE001 — any failure to read is damage, whatever the reader raises
        return f"{path.name} cannot be read ({type(exc).__name__})"
    return None


def damage(files: CellFiles) -> str | None:
    """Why the cell whose record is ``files.meta`` is damaged, or None if it is intact (or absent)."""
    if not files.meta.exists():
        return None
    try:
        record = read_record(files.meta)
    except (OSError, ValueError) as exc:
        return f"{files.meta.name}: {exc}"
    if record["status"] != "done":
        return None
    sums = record.get("files") or {}
    reason = _check_file(files.rows, sums.get("rows"), "rows")
    if reason is None and ("examples" in sums or files.examples.exists()):
        reason = _check_file(files.examples, sums.get("examples"), "examples")
    return reason


def move_aside(root: Path, cell_id: str) -> Path:
    """Move every file of a cell into ``cells/damaged/`` (names prefixed with the time); returns that folder."""
    target = root / "cells" / DAMAGED_DIR
    target.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    files = CellFiles.of(root, cell_id)
    for path in (files.meta, files.rows, files.examples):
        if path.exists() or path.is_symlink():
            path.replace(target / f"{stamp}-{path.name}")
    return target


def set_aside(path: Path) -> Path:
    """Rename ``path`` (a file or a folder where sepbench expected the other) to ``<name>.damaged-<time>``."""
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
    path.replace(aside)
    return aside


def ensure_folders(root: Path) -> list[str]:
    """Make sure cells/, cells/damaged/ and examples/ are folders: whatever is in their way is set aside
    (renamed, never deleted). Returns one line per thing set aside."""
    lines = []
    for folder in (root / "cells", root / "cells" / DAMAGED_DIR, root / "examples"):
        if (folder.exists() or folder.is_symlink()) and not folder.is_dir():
            aside = set_aside(folder)
            lines.append(f"  damaged: {folder.relative_to(root)} is not a folder: moved to {aside.relative_to(root)}")
        folder.mkdir(exist_ok=True)
    return lines


def remove_partial_writes(root: Path) -> int:
    """Delete temp files that a killed atomic write left behind (``.<name>.<random>.part``; ``.tmp`` before)."""
    count = 0
    for folder in (root, root / "cells", root / "examples", root / "models", root / "checkpoints"):
        for pattern in (".*.part", ".*.tmp"):
            for path in folder.glob(pattern):
                if path.is_file():
                    path.unlink(missing_ok=True)
                    count += 1
    return count
