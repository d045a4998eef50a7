"""Which machines trained a cell that was resumed from its checkpoint.

A cell stopped after some epochs (the end of a working day, a kill) resumes from its checkpoint in a later run —
perhaps on another machine. Its record's ``device_name``, ``cpu_capability`` and times would otherwise speak for the
machine that finished it only. So each attempt of a cell that keeps a checkpoint adds one line beside it,
``<run>/checkpoints/<cell id>.machines.json``: the checkpoint's key, the epoch it starts after and the machine
(device, CPU model and instruction set, host, torch, threads). The finished record of a resumed cell then says
``trained_on``: which epochs ran where, read back from the last attempt to the first (a later attempt's epochs
overwrite an earlier one's in the checkpoint). Epochs no line accounts for (a checkpoint made before sepbench kept
these lines) are listed with ``device_name`` None. The file goes with its checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from sepbench.files import atomic_write

SUFFIX = ".machines.json"
MACHINE_FIELDS = ("device", "device_name", "cpu_capability", "cpu_bf16", "gpu_ids", "host", "torch", "threads")


def _machine(record: dict[str, Any]) -> dict[str, Any]:
    """The machine fields of a cell record or an attempt line."""
    return {name: record[name] for name in MACHINE_FIELDS if name in record}


def attempts_file(checkpoint: str | Path) -> Path:
    """``<cell id>.machines.json`` beside the checkpoint ``<cell id>.pt``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + SUFFIX)


def read_attempts(checkpoint: str | Path) -> list[dict[str, Any]]:
    """The attempts recorded beside ``checkpoint``, oldest first; [] where there is no file or it cannot be read
    (a damaged file loses the attribution of earlier epochs, which the record then lists as unknown)."""
    try:
        found = json.loads(attempts_file(checkpoint).read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(found, list):
        return []
    return [a for a in found if isinstance(a, dict) and isinstance(a.get("from_epoch"), int)
            and not isinstance(a.get("from_epoch"), bool) and a["from_epoch"] >= 0]


def note_attempt(checkpoint: str | Path, key: str, from_epoch: int, meta: dict[str, Any]) -> None:
    """Add this attempt (training after epoch ``from_epoch``, on the machine ``meta`` describes) to the file beside
    ``checkpoint``; never fails (a file that cannot be written costs the attribution, not the cell)."""
    entry = {"key": key, "from_epoch": int(from_epoch), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
             **_machine(meta)}
    with contextlib.suppress(OSError):
        atomic_write(attempts_file(checkpoint), json.dumps([*read_attempts(checkpoint), entry], indent=1).encode())


def trained_on(attempts: list[dict[str, Any]], key: str, resumed_from: int, epochs: int,
               meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Which epochs of a cell resumed after epoch ``resumed_from`` (of ``epochs``) ran on which machine: the last
    epochs on this one (``meta``), the earlier ones on the attempts with this checkpoint ``key`` that trained them,
    first epoch first. Each item: ``epochs`` [first, last] and the machine's fields."""
    spans = [{"epochs": [resumed_from + 1, epochs], **_machine(meta)}] if epochs > resumed_from else []
    boundary = resumed_from
    for attempt in reversed([a for a in attempts if a.get("key") == key]):
        if boundary == 0:
            break
        if attempt["from_epoch"] < boundary:  # it trained epochs from_epoch+1 … boundary, which later ones kept
            note = {"note": attempt["note"]} if isinstance(attempt.get("note"), str) else {}
            spans.insert(0, {"epochs": [attempt["from_epoch"] + 1, boundary], **_machine(attempt), **note})
            boundary = attempt["from_epoch"]
    if boundary > 0:
        spans.insert(0, {"epochs": [1, boundary], "device_name": None,
                         "note": "not recorded (the checkpoint predates sepbench's record of machines)"})
    return spans


def machine_names(meta: dict[str, Any]) -> str | None:
    """The device a cell's record names — or, for a cell whose epochs ran on several, each in order of its first
    epoch, joined by ' + ' (an unrecorded one as 'unrecorded')."""
    spans = meta.get("trained_on")
    if not isinstance(spans, list) or not spans:
        return meta.get("device_name")
    names = [str(s.get("device_name") or "unrecorded") for s in spans if isinstance(s, dict)]
    return " + ".join(dict.fromkeys(names)) or meta.get("device_name")
