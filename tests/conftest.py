"""Shared fixtures: a tiny grid and a way to run the real `bench` command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("SEPBENCH_CALIBRATION", "1.0")  # tests measure no machine speed unless they test it


def pytest_configure(config):
    """A suite started as a background job of a shell without job control (``pytest &`` in a script, ``(... &)``)
    inherits SIGINT ignored: Python then installs no KeyboardInterrupt handler, and every ``bench`` the tests start
    ignores the Ctrl-C they send it. Take back what an interactive start has; the children inherit a handled
    signal as its default."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)

TINY_GRID = {
    "name": "tiny",
    "dataset": {"name": "mnist", "train_size": 2000, "test_size": 500},
    "scenarios": {"single": {"weights": [[1, 1]], "downsample": 2},
                  "dual": {"weights": [[0.7, 0.3], [0.3, 0.7]], "downsample": 2}},
    "noise": [0.01, 0.1],
    "seeds": [0],
    "train": {"mixtures": 128, "epochs": 1, "batch_size": 64, "lr": 1.0e-3},
    "test": {"mixtures": 40},
    "methods": ["average", "ica", {"method": "fcsae", "params": {"hidden": 64}}],
}


@pytest.fixture
def write_grid(tmp_path: Path):
    """Write a grid (the tiny one, updated with ``changes``) to a YAML file and return its path."""

    def write(changes: dict | None = None, name: str = "grid.yaml") -> Path:
        grid = {**TINY_GRID, **(changes or {})}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(grid, sort_keys=False))
        return path

    return write


def bench(*args: str, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "sepbench.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def bench_here(*args: str, cwd: Path, env: dict | None = None, timeout: float | None = None
               ) -> subprocess.CompletedProcess:
    """Run the command line in this process, as the ``bench`` script does (``sepbench.cli.main``): the same exit
    status, stdout and stderr as :func:`bench`, without a fresh interpreter importing torch (seconds per call).

    For tests of what a command says, returns and writes. Tests of processes, signals, time limits, Ray, fresh
    imports or plugins found on ``PYTHONPATH`` use :func:`bench`. The working directory, environment, ``sys.argv``,
    ``sys.path``, signal handlers, torch's thread count, the run log's handlers and the method registry are
    restored afterwards; ``timeout`` is accepted for symmetry with :func:`bench` and not enforced."""
    import contextlib
    import io
    import logging
    import signal
    import traceback
    import warnings

    import torch

    from sepbench import api, registry
    from sepbench.cli import main

    env = dict(env or {})
    if "PYTHONPATH" in env:
        raise ValueError("bench_here: a plugin on PYTHONPATH needs a fresh process, use bench()")
    registry._load_builtins()
    saved = (os.getcwd(), dict(os.environ), list(sys.argv), list(sys.path), torch.get_num_threads(),
             {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)})
    saved_registry = (dict(api._REGISTRY), dict(api._ORIGINS), list(registry._BROKEN), dict(registry._state))
    log = logging.getLogger("sepbench")
    saved_log = (list(log.handlers), log.level)
    out, err = io.StringIO(), io.StringIO()
    code: int = 0
    try:
        os.chdir(cwd)
        os.environ.update(env)
        if "OMP_NUM_THREADS" in env:  # read by a fresh process at start-up; here torch is running already
            torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
        sys.argv = ["bench", *args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.resetwarnings()  # as a fresh interpreter: a warning is printed on stderr, not kept by pytest
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", category)
            try:
                main()
            except SystemExit as exc:  # as the interpreter turns it into an exit status
                if exc.code is None or isinstance(exc.code, int):
                    code = exc.code or 0
                else:
                    print(exc.code, file=sys.stderr)
                    code = 1
            except Exception:  # an uncaught error: a traceback and exit status 1, as from `python -m`
                traceback.print_exc()
                code = 1
    finally:
        cwd_before, environ, argv, path, threads, handlers = saved
        os.chdir(cwd_before)
        os.environ.clear()
        os.environ.update(environ)
        sys.argv = argv
        sys.path[:] = path
        torch.set_num_threads(threads)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for handler in set(log.handlers) - set(saved_log[0]):  # the run log's file handler
            handler.close()
        log.handlers[:] = saved_log[0]
        log.setLevel(saved_log[1])
        for target, value in zip((api._REGISTRY, api._ORIGINS, registry._BROKEN, registry._state), saved_registry,
                                 strict=True):
            target.clear()
            (target.extend if isinstance(target, list) else target.update)(value)
    return subprocess.CompletedProcess(["bench", *args], code, out.getvalue(), err.getvalue())
