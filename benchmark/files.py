"""Atomic file writes, the one way sepbench writes a file that others read: wholly there or absent.

A leaf module (standard library only), so the engine and :mod:`sepbench.datasets` can both use it.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})  # no space, quota, file-size limit (ulimit -f)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a write that failed for want of space (Python ignores SIGXFSZ: EFBIG is raised)."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL


def describe_os_error(exc: OSError, doing: str = "write") -> str:
    """One line for an OSError: ``cannot <doing> <path>: <why>``."""
    why = "the disk is full" if exc.errno == errno.ENOSPC else exc.strerror or type(exc).__name__
    if exc.errno in (errno.EDQUOT, errno.EFBIG):
        why = f"the disk is full for this process ({exc.strerror})"
    where = f"{exc.filename}" + (f" → {exc.filename2}" if exc.filename2 else "") if exc.filename else "a file"
    return f"cannot {doing} {where}: {why}"


@contextmanager
def atomic_output(path: str | Path) -> Iterator[BinaryIO]:
    """A binary handle whose bytes become ``path`` on a clean exit (temp file beside it, fsync, rename, mode
    0644 so a shared directory stays readable); on an error, or Ctrl-C, ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc  # named by the file meant, not the temp file
    in_body = False
    try:
        with os.fdopen(fd, "wb") as handle:
            in_body = True
            yield handle
            in_body = False
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename not in (None, tmp) or (in_body and not is_disk_full(exc)):
            raise  # the caller's own error (a failed download, …) passes as it is; a full disk names the file
        raise OSError(exc.errno, exc.strerror, str(path)) from exc  # a write of ours: named by the file meant
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_output`)."""
    with atomic_output(path) as handle:
        handle.write(data)


def read_json_file(path: Path, max_bytes: int) -> Any:
    """The JSON value in ``path``, read back from a run directory without trusting it; ValueError says why it cannot
    be read (not a regular file — a pipe's read would block —, too large, unreadable, not JSON)."""
    if not path.is_file():
        raise ValueError("not a regular file")
    try:
        if path.stat().st_size > max_bytes:
            raise ValueError(f"larger than {max_bytes // 2**20} MiB")
        return json.loads(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not valid JSON ({type(exc).__name__})") from None
