"""The last log lines of a cell's crashed Ray worker, copied into the cell's record while they still exist.

Ray writes each worker's stdout and stderr to ``worker-<id>-<job>-<pid>.out`` / ``.err`` in its session's logs
dir, with a ``:task_name:<name>`` line whenever the worker starts a task; a private Ray's temp dir (and with it
these files) is removed when the run ends, so the crash message's "check python-core-worker-*.log" would point
at nothing.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

TAIL_LINES = 50  # per stream (stdout, stderr)
_POINTER = re.compile(r"\s*Check python-core-worker-\*\.log files for more information\.?")


def logs_dir(ray: Any) -> Path | None:
    """The session logs dir of the connected Ray, where this machine can read it (a private Ray, a local node)."""
    with contextlib.suppress(Exception):  # private API of ray 2.x; without it the crash message stays Ray's own
        path = Path(ray._private.worker._global_node.get_logs_dir_path())
        return path if path.is_dir() else None
    return None


def _after_marker(path: Path, marker: str) -> list[str] | None:
    """The lines of ``path`` after the last ``marker`` line, or None when ``marker`` is not in it."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    starts = [i for i, line in enumerate(lines) if line.strip() == marker]
    return lines[starts[-1] + 1:] if starts else None


def worker_log_tail(directory: Path | None, task_name: str, lines: int = TAIL_LINES) -> str | None:
    """The last ``lines`` lines of stdout and of stderr of the worker that ran ``task_name`` last, or None."""
    if directory is None:
        return None
    marker = f":task_name:{task_name}"
    found: list[tuple[float, Path, list[str]]] = []
    for path in directory.glob("worker-*.*"):
        if path.suffix in (".out", ".err"):
            tail = _after_marker(path, marker)
            if tail is not None:
                with contextlib.suppress(OSError):
                    found.append((path.stat().st_mtime, path, tail))
    if not found:
        return None
    latest = max(found, key=lambda f: f[0])[1].with_suffix("")  # the worker of the last attempt: both its streams
    parts = []
    for _, path, tail in sorted(found, key=lambda f: f[1].suffix, reverse=True):  # .out, then .err
        if path.with_suffix("") == latest:
            text = [line for line in tail if not line.startswith(":job_id:")][-lines:]
            parts.append(f"--- {'stdout' if path.suffix == '.out' else 'stderr'} of {path.name} (last lines) ---")
            parts.extend(text or ["(empty)"])
    return "\n".join(parts)


def crash_message(message: str, have_log: bool) -> str:
    """Ray's crash message, pointing at the cell record's ``worker_log`` instead of files that will vanish."""
    if not have_log:
        return message
    return _POINTER.sub("", message).rstrip() + " (the worker's last log lines are in this record's worker_log)"
