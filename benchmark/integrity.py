"""Damaged cell files: detected (checksums recorded at write time, else a full read), reported, moved aside.

A cell's record lists the SHA-256 of its rows and examples files (``files``); a file that does not match, cannot
be read, or is missing where the record says it was written makes the cell damaged. A damaged cell is moved to
``cells/damaged/`` (never deleted) and counts as absent: the next run recomputes it.
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

DAMAGED_DIR = "damaged"


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
        return cls(root / "cells" / f"{cell_id}.json", root / "cells" / f"{cell_id}.parquet",
                   root / "examples" / f"{cell_id}.npz")


def read_record(path: Path) -> dict[str, Any]:
    """A cell's JSON record; ValueError if it is not a JSON object with a status."""
    try:
        record = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not valid JSON ({type(exc).__name__})") from None
    if not isinstance(record, dict) or record.get("status") not in ("done", "failed"):
        raise ValueError("not a cell record (no status)")
    return record


def _check_file(path: Path, recorded: str | None, kind: str) -> str | None:
    """Why ``path`` is damaged (None: intact). Without a recorded checksum (older runs), read it whole."""
    if not path.is_file():
        return f"{path.name} is missing"
    if recorded is not None:
        return None if sha256_bytes(path.read_bytes()) == recorded else f"{path.name} does not match its checksum"
    try:
        if kind == "rows":
            pq.read_table(path)
        else:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            if bad is not None:
                return f"{path.name}: {bad} is corrupt"
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
        if path.exists():
            path.replace(target / f"{stamp}-{path.name}")
    return target


def remove_partial_writes(root: Path) -> int:
    """Delete temp files that a killed atomic write left behind (``.<name>.<random>.part``; ``.tmp`` before)."""
    count = 0
    for folder in (root, root / "cells", root / "examples", root / "models"):
        for pattern in (".*.part", ".*.tmp"):
            for path in folder.glob(pattern):
                path.unlink(missing_ok=True)
                count += 1
    return count
