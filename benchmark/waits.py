"""Saying what a long wait is for: a lock another run holds, a one-off training, a download, a start-up.

Every wait that can last more than a second says, before it starts, what it waits for, where, and about how
long — so a run never sits silent.
"""

from __future__ import annotations

import fcntl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from sepbench.progress import format_duration

Say = Callable[[str], None]


def say_on_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def about(seconds: float | None) -> str:
    """'about 0m20s', or 'time unknown'."""
    return f"about {format_duration(seconds)}" if seconds is not None and seconds > 0 else "time unknown"


def lock_exclusive(file: IO[str], path: str | Path, what: str, estimate: float | None, say: Say | None) -> float:
    """Take an exclusive ``flock`` on ``file``; when another process holds it, first say so (``what`` it waits
    for, the lock's ``path``, an ``estimate`` of the wait), and once it has it, how long it waited. Returns the
    seconds waited."""
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return 0.0
    except BlockingIOError:
        pass
    (say or say_on_stderr)(f"  waiting for {what}: another run holds the lock {path} ({about(estimate)})")
    started = time.monotonic()
    fcntl.flock(file, fcntl.LOCK_EX)
    waited = time.monotonic() - started
    (say or say_on_stderr)(f"  … got the lock {path} after {format_duration(waited)}")
    return waited
