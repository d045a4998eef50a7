"""A private Ray's temp dir: owner-only, named after the driver that owns it, removed when the Ray stops — or
by the next run, when its driver was killed first (its orphaned Ray, if any, is stopped by PID then).

``owner.json`` in the dir holds the driver's PID and start time (psutil), so a PID reused since is never taken
for the driver. Only directories of this user are looked at; one without an owner file (being created, or
left by an older sepbench) is removed only when it is old and no process names it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import psutil

from sepbench.executors.processes import kill_all, wait_gone

PREFIX = "sepbench-ray-"
OWNER_FILE = "owner.json"
UNOWNED_AGE = 600.0  # seconds: an unowned dir younger than this may be a run being set up


def temp_base() -> str:
    """The temp dir if its path leaves room for Ray's unix socket names (~107 characters at most), else /tmp."""
    base = tempfile.gettempdir()
    return base if len(base) < 40 else "/tmp"


def make_temp_dir() -> str:
    """A fresh temp dir, readable by its owner only (mkdtemp: 0700), that names the driver owning it."""
    path = tempfile.mkdtemp(prefix=PREFIX, dir=temp_base())
    me = psutil.Process()
    (Path(path) / OWNER_FILE).write_text(json.dumps({"pid": me.pid, "created": me.create_time()}))
    return path


def _owner(directory: Path) -> str:
    """'alive' or 'dead' (the driver in the owner file), or 'unknown' (no readable owner file)."""
    try:
        owner = json.loads((directory / OWNER_FILE).read_text())
        pid, created = int(owner["pid"]), float(owner["created"])
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown"
    try:
        return "alive" if abs(psutil.Process(pid).create_time() - created) < 1e-3 else "dead"
    except psutil.NoSuchProcess:
        return "dead"
    except psutil.Error:
        return "unknown"


def _stop_orphans(users: list[psutil.Process]) -> None:
    """Stop a dead driver's Ray: ``ray start --block`` first (it stops its node in order), then what is left."""
    for process in users:
        try:
            if "start" in process.cmdline() and "--block" in process.cmdline():
                process.terminate()
        except psutil.Error:
            pass
    kill_all(wait_gone(users, 10))
    wait_gone(users, 5)


def remove_stale_temp_dirs() -> list[Path]:
    """Remove this user's private-Ray temp dirs whose driver is gone; returns what was removed."""
    candidates = [d for d in Path(temp_base()).glob(f"{PREFIX}*") if d.is_dir() and d.stat().st_uid == os.getuid()]
    if not candidates:
        return []
    processes = list(psutil.process_iter(["cmdline"]))
    removed = []
    for directory in candidates:
        users = [p for p in processes if str(directory) in " ".join(p.info["cmdline"] or ())]
        owner = _owner(directory)
        if owner == "alive":
            continue
        if owner == "unknown":
            try:
                young = time.time() - directory.stat().st_mtime < UNOWNED_AGE
            except OSError:
                continue
            if users or young:
                continue
        _stop_orphans(users)
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed
