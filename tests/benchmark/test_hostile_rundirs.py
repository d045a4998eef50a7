"""Damaged and foreign run directories through the real command line: every state gets one line and a defined exit
status, never a traceback; a rerun recomputes what it must, a report reports what it can read and names the rest.

The states are built by the functions of ``DAMAGES`` (scripts/hostile_rundirs.py measures them) on a copy of one
real tiny run (`average`, one scenario, three σ)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import TINY_GRID, bench, bench_here

GRID = {**TINY_GRID, "scenarios": {"single": TINY_GRID["scenarios"]["single"]}, "noise": [0.01, 0.05, 0.1],
        "test": {"mixtures": 20}, "methods": ["average"]}
FAILING_PLUGIN = '''\
from sepbench import Method, register_method


@register_method("failing")
class Failing(Method):
    def separate(self, y):
        raise RuntimeError("separate() is not written yet")
'''
DISK_LIMIT = 4096  # bytes per file: the manifest (about 2 KB) fits, a cell's rows (about 9 KB) do not


def cell_ids(run: Path) -> list[str]:
    """The run's cells, by σ."""
    manifest = json.loads((run / "manifest.json").read_text())
    return [c["id"] for c in sorted(manifest["cells"], key=lambda c: c["sigma"])]


def write_record(run: Path, cell_id: str, record: dict) -> None:
    (run / "cells" / f"{cell_id}.json").write_text(json.dumps(record))


def edit_manifest(run: Path, edit: Callable[[dict], object]) -> None:
    manifest = json.loads((run / "manifest.json").read_text())
    edit(manifest)
    (run / "manifest.json").write_text(json.dumps(manifest))


def _replace_by_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _replace_by_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)  # an open() for reading would block: a file that cannot be read like a file


def unreadable_cell_files(run: Path) -> None:
    first, second, _ = cell_ids(run)
    _replace_by_folder(run / "cells" / f"{first}.parquet")
    _replace_by_fifo(run / "cells" / f"{second}.json")


def escaping_cell_id(run: Path) -> None:
    """A manifest whose first cell id climbs out of the run directory to a well-formed cell (σ 0.7) outside."""
    first = cell_ids(run)[0]
    outside = run.parent / "elsewhere"
    outside.mkdir(exist_ok=True)
    rows = pd.read_parquet(run / "cells" / f"{first}.parquet").assign(sigma=0.7, cell="../../../elsewhere/x")
    buffer = io.BytesIO()
    rows.to_parquet(buffer, index=False)
    (outside / "x.parquet").write_bytes(buffer.getvalue())
    record = json.loads((run / "cells" / f"{first}.json").read_text())
    record["files"] = {"rows": hashlib.sha256(buffer.getvalue()).hexdigest()}
    (outside / "x.json").write_text(json.dumps(record))
    edit_manifest(run, lambda m: m["cells"][0].update(id="../../../elsewhere/x"))
    (run / "cells" / "notes.json").write_text("{}")  # a file in cells/ that no cell id names


DAMAGES: dict[str, Callable[[Path], None]] = {
    "manifest {'history': 5}": lambda run: (run / "manifest.json").write_text('{"history": 5}'),
    "manifest {'cells': 'x'}": lambda run: (run / "manifest.json").write_text('{"cells": "x"}'),
    "manifest []": lambda run: (run / "manifest.json").write_text("[]"),
    "cell files a folder and a pipe": unreadable_cell_files,
    "manifest.json a folder": lambda run: _replace_by_folder(run / "manifest.json"),
    "record {'status': 'done'}": lambda run: write_record(run, cell_ids(run)[0], {"status": "done"}),
    "cells/ a file": lambda run: (shutil.rmtree(run / "cells"), (run / "cells").write_text("")),
    "cell id ../../../elsewhere/x": escaping_cell_id,
    "checkpoints/ a file": lambda run: (run / "checkpoints").write_text(""),
    "checkpoints/ garbage": lambda run: _garbage_checkpoints(run),
}


def _garbage_checkpoints(run: Path) -> None:
    """A killed run's checkpoint folder, its files garbage: one a cell's of this grid, one of no cell, one a folder."""
    folder = run / "checkpoints"
    folder.mkdir()
    (folder / f"{cell_ids(run)[0]}.pt").write_bytes(b"\x80\x04garbage")
    (folder / "0123456789ab.pt").write_bytes(b"")
    (folder / "notes").mkdir()


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """One real tiny run, copied by each test before it damages it."""
    root = tmp_path_factory.mktemp("clean")
    result = run_grid(root, GRID, root / "run")
    assert result.returncode == 0, result.stderr
    return root / "run"


def run_grid(root: Path, grid: dict, out: Path, command: Callable = bench_here, **kwargs
             ) -> subprocess.CompletedProcess:
    """``bench run`` of ``grid`` under the local executor (in this process unless ``command`` is ``bench``)."""
    path = root / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return command("run", "--grid", str(path), "--out", str(out), "--executor", "local", cwd=root, **kwargs)


def damaged_copy(clean: Path, tmp_path: Path, case: str) -> Path:
    run = tmp_path / "run"
    shutil.copytree(clean, run)
    DAMAGES[case](run)
    return run


def rows_of(run: Path) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in sorted((run / "cells").glob("*.parquet"))]
    return pd.concat(frames).sort_values(["sigma", "mixture", "source"]).reset_index(drop=True)


def lines_with(result: subprocess.CompletedProcess, fragment: str, code: int) -> list[str]:
    """The lines of stderr that contain ``fragment``, once the exit status and the absence of a traceback hold."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "Logging error" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if fragment in line]


@pytest.mark.parametrize("case", ["manifest {'history': 5}", "manifest {'cells': 'x'}", "manifest []"])
def test_a_manifest_of_the_wrong_shape_is_set_aside_by_a_run_and_read_around_by_a_report(clean, tmp_path, case):
    run = damaged_copy(clean, tmp_path, case)
    report = bench_here("report", str(run), cwd=tmp_path)
    assert len(lines_with(report, "manifest.json", 0)) == 1
    assert sorted(pd.read_csv(run / "summary.csv")["sigma"]) == [0.01, 0.05, 0.1]  # from the cell records

    again = run_grid(tmp_path, GRID, run)
    [line] = lines_with(again, "damaged: manifest.json", 0)
    assert "moved to manifest.json.damaged-" in line and "3 already done, 0 to run" in again.stderr
    assert len(list(run.glob("manifest.json.damaged-*"))) == 1
    manifest = json.loads((run / "manifest.json").read_text())
    assert len(manifest["cells"]) == 3 and manifest["ended"] and len(manifest["history"]) == 1


def test_unreadable_cell_files_are_damaged_cells_for_a_run_and_a_report(clean, tmp_path):
    run = damaged_copy(clean, tmp_path, "cell files a folder and a pipe")
    first, second, third = cell_ids(run)
    report = bench("report", str(run), cwd=tmp_path, timeout=300)  # a pipe read as a file would block here
    named = lines_with(report, "damaged cell", 0)
    assert [line.split("damaged cell ")[1].split()[0] for line in named] == [first, second]
    assert all("not a regular file" in line for line in named)
    assert pd.read_csv(run / "summary.csv")["sigma"].tolist() == [0.1]

    again = run_grid(tmp_path, GRID, run, bench, timeout=300)
    assert len(lines_with(again, "moved to cells/damaged/", 0)) == 2
    assert "1 already done, 2 to run" in again.stderr
    pd.testing.assert_frame_equal(rows_of(run), rows_of(clean))  # recomputed: the same numbers


@pytest.mark.parametrize("case", ["checkpoints/ a file", "checkpoints/ garbage"])
def test_an_odd_ckpt_folder_upsets_no_command(clean, tmp_path, case):
    """`checkpoints/` a file, or holding garbage (the test's name avoids the word: stderr names its folder)."""
    run = damaged_copy(clean, tmp_path, case)
    report = bench_here("report", str(run), cwd=tmp_path)
    assert lines_with(report, "checkpoint", 0) == []
    assert sorted(pd.read_csv(run / "summary.csv")["sigma"]) == [0.01, 0.05, 0.1]
    again = run_grid(tmp_path, GRID, run)
    assert lines_with(again, "checkpoint", 0) == [] and "3 already done, 0 to run" in again.stderr
    if case == "checkpoints/ a file":
        assert (run / "checkpoints").is_file()  # not ours to delete
    else:  # the checkpoints of cells no run will resume are deleted; what is not a checkpoint is left alone
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["notes"]
    verify = bench_here("verify", str(run), "--cells", "1", "--executor", "local", cwd=tmp_path)
    assert verify.returncode == 0, verify.stderr


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (DISK_LIMIT, DISK_LIMIT))


def test_a_full_disk_stops_the_run_cleanly_and_a_rerun_completes_it(clean, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(GRID, sort_keys=False))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "sepbench.cli", "run", "--grid", str(grid), "--out", str(out), "--executor",
               "local"]
    full = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          preexec_fn=_limit_file_size)  # writes past 4 KB fail with EFBIG (Python ignores SIGXFSZ)
    [line] = lines_with(full, "error:", 3)
    assert f"cannot write {out}/cells/" in line and ".parquet: the disk is full" in line and "run stopped" in line
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["ended"] and "the disk is full" in manifest["stopped"]
    assert not list((out / "cells").glob("*.parquet")) and not list((out / "cells").glob(".*.part"))

    rerun = run_grid(tmp_path, GRID, out)
    assert rerun.returncode == 0, rerun.stderr
    pd.testing.assert_frame_equal(rows_of(out), rows_of(clean))


def test_an_unwritable_out_is_one_line_and_exit_2(clean, tmp_path):
    (tmp_path / "a-file").write_text("")
    for out in (tmp_path / "a-file" / "run", Path("/proc/sepbench-run")):  # through a file; a kernel file system
        [line] = lines_with(run_grid(tmp_path, GRID, out), "error:", 2)
        assert line.startswith(f"error: {out}: cannot write a run directory here")
    [line] = lines_with(bench_here("report", str(clean), "--out", str(tmp_path / "a-file" / "x"), cwd=tmp_path),
                        "error:", 2)
    assert line == f"error: cannot use {tmp_path / 'a-file' / 'x'}: Not a directory"


@pytest.mark.parametrize("case, damage, report_code", [
    ("manifest.json a folder", "damaged: manifest.json (not a regular file)", 0),
    ("record {'status': 'done'}", "not a cell record (no config)", 0),
    ("cells/ a file", "damaged: cells is not a folder: moved to cells.damaged-", 2),
])
def test_foreign_things_in_the_run_directory_are_one_line_each(clean, tmp_path, case, damage, report_code):
    run = damaged_copy(clean, tmp_path, case)
    report = bench_here("report", str(run), cwd=tmp_path)
    [line] = lines_with(report, "manifest.json" if "manifest" in case else str(run), report_code)
    if report_code == 2:
        assert line.startswith("error: ") and "no finished cell to report on" in line and "not a folder" in line
    again = run_grid(tmp_path, GRID, run)
    [line] = lines_with(again, damage, 0)
    pd.testing.assert_frame_equal(rows_of(run), rows_of(clean))
    assert len(json.loads((run / "manifest.json").read_text())["cells"]) == 3


def test_cell_ids_read_from_disk_are_never_used_as_paths(clean, tmp_path):
    run = damaged_copy(clean, tmp_path, "cell id ../../../elsewhere/x")
    report = bench_here("report", str(run), cwd=tmp_path)
    [line] = lines_with(report, "../../../elsewhere/x", 0)
    assert "an entry without a valid cell id" in line
    assert len(lines_with(report, "cells/notes.json: not a cell record", 0)) == 1
    assert 0.7 not in pd.read_csv(run / "summary.csv")["sigma"].tolist()  # nothing read from outside the run

    first = cell_ids(clean)[0]  # a record whose rows name another cell: damaged, not followed
    rows = pd.read_parquet(run / "cells" / f"{first}.parquet").assign(cell="../../../elsewhere/x")
    rows.to_parquet(run / "cells" / f"{first}.parquet", index=False)
    record = json.loads((run / "cells" / f"{first}.json").read_text())
    record["files"]["rows"] = hashlib.sha256((run / "cells" / f"{first}.parquet").read_bytes()).hexdigest()
    write_record(run, first, record)
    report = bench_here("report", str(run), cwd=tmp_path)
    [line] = lines_with(report, f"damaged cell {first}", 0)
    assert "holds rows of another cell" in line

    again = run_grid(tmp_path, GRID, run)
    assert len(lines_with(again, "../../../elsewhere/x", 0)) == 1
    assert len(lines_with(again, "cells/notes.json (a cell id is 12 hex digits): left alone", 0)) == 1
    assert (run / "cells" / "notes.json").exists() and (tmp_path / "elsewhere" / "x.json").exists()


def test_failed_cells_are_listed_with_their_errors_in_every_report(tmp_path):
    plugin = tmp_path / "plugins" / "failing_demo"
    plugin.mkdir(parents=True)
    (plugin / "__init__.py").write_text(FAILING_PLUGIN)
    env = {"PYTHONPATH": str(tmp_path / "plugins")}
    error = "RuntimeError: separate() is not written yet"
    grid = {**GRID, "noise": [0.01, 0.1], "plugins": ["failing_demo"]}
    for methods, run, done in ((["average", "failing"], tmp_path / "some", 2), (["failing"], tmp_path / "all", 0)):
        assert run_grid(tmp_path, {**grid, "methods": methods}, run, bench, env=env).returncode == 1
        report = bench_here("report", str(run), cwd=tmp_path)
        failed = lines_with(report, "failed cell", 0)
        assert len(failed) == 2 and all(line.endswith(error) for line in failed)
        for page in ("report.md", "report.html"):
            text = (run / page).read_text()
            assert text.count(error) == 2 and text.count("failed: failing · single · σ=") == 2
            assert (f"{done} of 4 cells done" if done else "0 of 2 cells done") in text
    assert not (tmp_path / "all" / "summary.csv").exists()
    assert "No cell finished" in (tmp_path / "all" / "report.md").read_text()


def test_a_manifest_that_cannot_be_closed_on_a_full_disk_is_said(tmp_path, monkeypatch):
    """The disk fills up while a cell is written and stays full: the manifest cannot be closed either; the run says
    both in a line each and returns exit status 3 (the ENOSPC is injected: a real one cannot be made safely here)."""
    import errno
    import io as text_io

    from sepbench.grid import load_grid
    from sepbench.runner import EXIT_DISK_FULL, run_grid
    from sepbench.store import RunStore

    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({**GRID, "noise": [0.01]}, sort_keys=False))
    writes = []
    real_write_manifest = RunStore.write_manifest

    def write_manifest(self, manifest):
        writes.append(manifest.get("ended"))
        if len(writes) > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.root / "manifest.json"))
        real_write_manifest(self, manifest)

    def write_result(self, result, run_name):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.cells / f"{result.cell_id}.parquet"))

    monkeypatch.setattr(RunStore, "write_manifest", write_manifest)
    monkeypatch.setattr(RunStore, "write_result", write_result)
    stream = text_io.StringIO()
    status = run_grid(load_grid(str(path)), out=tmp_path / "run", executor="local", progress_stream=stream)
    assert status == EXIT_DISK_FULL and len(writes) == 2 and writes[1] is not None
    lines = stream.getvalue().splitlines()
    assert lines[-2].startswith(f"error: cannot write {tmp_path / 'run' / 'cells'}/")
    assert "the disk is full" in lines[-2]
    assert lines[-1].startswith("error: manifest.json could not be closed either") and "still says" in lines[-1]
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["ended"] is None
