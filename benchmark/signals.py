"""SIGTERM handled like Ctrl-C: it raises :class:`Terminated` (a KeyboardInterrupt) in the main thread, so the
same paths keep finished cells, stop Ray and end the run; the exit status is 143 (128 + SIGTERM) instead of 130.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM (``kill``, a job scheduler, systemd): stop as on Ctrl-C."""


_received = threading.Event()  # set by the handler: Ray's blocking calls (ray.wait, ray.get) re-raise every
# KeyboardInterrupt raised inside them as a plain KeyboardInterrupt, losing the Terminated subclass


def raise_terminated(signum: int, frame: Any) -> None:
    _received.set()
    raise Terminated()


def is_termination(exc: BaseException) -> bool:
    """Whether ``exc`` (a KeyboardInterrupt caught somewhere) came from SIGTERM, even after Ray re-raised it."""
    return isinstance(exc, Terminated) or isinstance(exc.__cause__, Terminated) or _received.is_set()


def forget_termination() -> None:
    """A new run starts: no SIGTERM received yet (for runs in one process, e.g. tests and notebooks)."""
    _received.clear()


def install_sigterm_handler() -> None:
    """SIGTERM raises :class:`Terminated` from now on (main thread only; elsewhere nothing changes).

    Ray's ``ray.init`` installs its own handler (``sys.exit``): call this again after it."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, raise_terminated)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver the first one: a cell's files are written
    all or none. Only in the main thread (the only one that receives signals); elsewhere the block just runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:
            handler = previous[received[0]]
            if callable(handler):
                handler(received[0], None)  # the default SIGINT handler raises KeyboardInterrupt
            elif handler == signal.SIG_DFL:
                raise KeyboardInterrupt if received[0] == signal.SIGINT else Terminated


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Clean-up must not be cut short by a second Ctrl-C or SIGTERM (it would leave processes behind)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
