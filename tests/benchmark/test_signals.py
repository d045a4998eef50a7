"""SIGTERM to a real Ray run ends it like Ctrl-C (exit 143, finished cells kept, Ray stopped, no C++ stack dump);
a private Ray's temp dir is owner-only and removed, by the next run when its driver was killed."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.benchmark.test_ray_executor import (
    DUAL,
    assert_nothing_left,
    gated,
    marker,
    mtimes,
    popen_bench,
    wait_for,
)
from tests.conftest import bench

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
DUMP_MARKERS = ("*** SIGTERM received", "PC: @", "*** Aborted at", "Traceback")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A TMPDIR short enough for Ray's socket paths, so that a run's private Ray makes its temp dir there."""
    path = Path(tempfile.mkdtemp(prefix="sbt-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def ray_dirs(root: Path) -> list[Path]:
    return sorted(root.glob("sepbench-ray-*"))


def test_sigterm_ends_a_ray_run_like_ctrl_c(tmp_path: Path, write_grid, short_tmp: Path) -> None:
    entry, plugin_env, _ = gated(tmp_path)  # seed 0's cell finishes, the others wait in fit
    grid = write_grid({"scenarios": DUAL, "noise": [0.1], "seeds": [0, 1, 2, 3], "methods": [entry],
                       "plugins": ["gated_demo"]})
    out = tmp_path / "run"
    env = {**marker(), **plugin_env, "TMPDIR": str(short_tmp)}
    log = tmp_path / "run.log"
    proc = popen_bench("run", "--grid", str(grid), "--out", str(out), cwd=tmp_path, env=env, log=log)
    try:
        (temp,) = wait_for(lambda: ray_dirs(short_tmp), 120, "the private Ray's temp dir", proc)
        assert stat.S_IMODE(temp.stat().st_mode) == 0o700  # readable by its owner only
        wait_for(lambda: list((out / "cells").glob("*.parquet")) if (out / "cells").exists() else [], 240,
                 "a finished cell", proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 143, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_nothing_left(env)
    text = log.read_text()
    assert "terminated" in text, text
    assert not [m for m in DUMP_MARKERS if m in text], text
    assert ray_dirs(short_tmp) == []
    kept = mtimes(out)
    assert len(kept) == 1, text


def test_a_killed_drivers_ray_temp_dir_is_removed_by_the_next_run(tmp_path: Path, write_grid,
                                                                  short_tmp: Path) -> None:
    entry, plugin_env, hold = gated(tmp_path, free=-1)  # the first run cannot end before it is killed
    grid = write_grid({"scenarios": DUAL, "noise": [0.1], "methods": [entry], "plugins": ["gated_demo"]})
    env = {**marker(), **plugin_env, "TMPDIR": str(short_tmp)}
    proc = popen_bench("run", "--grid", str(grid), "--out", str(tmp_path / "a"), cwd=tmp_path, env=env,
                       log=tmp_path / "a.log")
    try:
        (stale,) = wait_for(lambda: ray_dirs(short_tmp), 120, "the private Ray's temp dir", proc)
        wait_for(lambda: (stale / "owner.json").exists(), 60, "the temp dir's owner file", proc)
    finally:
        proc.kill()  # SIGKILL: nothing of the driver runs any more
        proc.wait()
        hold.unlink()
    # its Ray follows it (parent-death signal), unless the signal came while Ray was starting: then it stays,
    # orphaned, until the next run stops it; the temp dir stays behind either way
    assert ray_dirs(short_tmp) == [stale]
    foreign = short_tmp / "sepbench-ray-live"  # a live run's dir (this test process owns it): never touched
    foreign.mkdir()
    (foreign / "owner.json").write_text(f'{{"pid": {os.getpid()}, "created": {_created(os.getpid())}}}')
    time.sleep(1)

    again = bench("run", "--grid", str(grid), "--out", str(tmp_path / "b"), cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert_nothing_left(env)
    assert ray_dirs(short_tmp) == [foreign]  # the stale one and the run's own are gone
    assert stat.S_IMODE(foreign.stat().st_mode) == 0o755  # and the live one untouched


def _created(pid: int) -> float:
    import psutil

    return psutil.Process(pid).create_time()
