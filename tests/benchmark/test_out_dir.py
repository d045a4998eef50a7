"""Where `bench run` may write: a new or empty directory, or an earlier run's; any other directory (``--out .``
beside a user's own grid.yaml) is refused in one line before a byte is written to it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sepbench.store import foreign_dir_problem
from tests.conftest import TINY_GRID, bench_here

SCIENTIST = "\U0001f469\u200d\U0001f52c"  # 👩‍🔬: an emoji sequence joined by U+200D, a legal label
ONE_CELL = {**TINY_GRID, "scenarios": {"single": {"weights": [[1, 1]]}}, "noise": [0.01], "test": {"mixtures": 8},
            "methods": [{"method": "average", "label": SCIENTIST}]}
USER_GRID = "# my grid: keep these comments\n" + yaml.safe_dump(ONE_CELL, sort_keys=False, allow_unicode=True) \
    + "# σ: the noise of our detector (measured in May)\n"


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under ``root``, hidden ones included."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


def foreign_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "grid.yaml").write_text(USER_GRID)
    (root / "run.log").write_text("my own log, not sepbench's\n")
    (root / ".x.tmp").write_bytes(b"an editor's swap file")
    return root


def run(grid: Path, cwd: Path, *out: str):
    return bench_here("run", "--grid", str(grid), *out, "--executor", "local", cwd=cwd, timeout=300)


def assert_refused(result, folder: Path) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: ") and "not empty and not a run directory" in lines[0]
    assert "'.x.tmp', 'grid.yaml', 'run.log'" in lines[0] and "choose another --out" in lines[0]


def test_out_dot_beside_a_users_grid_is_refused_and_left_byte_identical(tmp_path: Path) -> None:
    folder = foreign_folder(tmp_path / "project")
    before = snapshot(folder)
    assert_refused(run(folder / "grid.yaml", folder, "--out", "."), folder)
    assert snapshot(folder) == before  # no .lock, no cells/, no rewritten grid, nothing appended or deleted


def test_the_default_out_follows_the_same_rule(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(USER_GRID)
    folder = foreign_folder(tmp_path / "reports" / "tiny")  # the grid's name is tiny: reports/tiny
    before = snapshot(tmp_path)
    assert_refused(run(grid, tmp_path), folder)
    assert snapshot(tmp_path) == before


def test_an_empty_folder_and_then_the_run_folder_itself_are_accepted(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(USER_GRID)
    out = tmp_path / "empty"
    out.mkdir()
    first = run(grid, tmp_path, "--out", str(out))
    assert first.returncode == 0, first.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert [c["label"] for c in manifest["cells"]] == [SCIENTIST]
    assert len(list((out / "cells").glob("*.parquet"))) == 1
    (out / "notes.md").write_text("what I saw\n")  # a user's note in a run directory does not make it foreign
    again = run(grid, tmp_path, "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert "1 cells planned, 1 already done, 0 to run" in again.stderr
    assert (out / "notes.md").read_text() == "what I saw\n"


def test_which_folders_are_a_runs(tmp_path: Path) -> None:
    def folder(name: str, files: dict[str, str]) -> Path:
        root = tmp_path / name
        root.mkdir()
        for path, text in files.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text)
        return root

    run_manifest = json.dumps({"name": "tiny", "cells": []})
    accepted = {
        "absent": tmp_path / "absent",
        "empty": folder("empty", {}),
        "a run's, with a user's files beside it": folder("run", {"manifest.json": run_manifest, "README.md": "x"}),
        "a run's, manifest damaged": folder("damaged", {".lock": "", "manifest.json": "{trunc", "cells/a.json": ""}),
        "a run's, manifest set aside": folder("aside", {".lock": "", "manifest.json.damaged-20260101T000000": "",
                                                       "grid.yaml": "", "run.log": ""}),
        "a run's, killed before its manifest": folder("killed", {".lock": "1", "grid.yaml": "", "cells/.a.json.x.part":
                                                                 "", "examples/a.npz": ""}),
        "a run's, killed right after its lock": folder("locked", {".lock": "1"}),
    }
    for case, root in accepted.items():
        assert foreign_dir_problem(root) is None, case
    refused = {
        "a user's grid and log": folder("user", {"grid.yaml": "name: x\n", "run.log": ""}),
        "a web app's manifest": folder("webapp", {"manifest.json": json.dumps({"name": "app", "icons": []})}),
        "a lock and a user's file": folder("other", {".lock": "", "grid.yaml": "", "main.py": ""}),
        "a hidden file only": folder("hidden", {".DS_Store": ""}),
    }
    for case, root in refused.items():
        assert "not empty and not a run directory" in foreign_dir_problem(root), case
    (tmp_path / "file").write_text("")
    assert foreign_dir_problem(tmp_path / "file") == f"{tmp_path / 'file'}: not a directory"


@pytest.mark.parametrize("count", [2, 5])
def test_the_message_names_a_few_entries(tmp_path: Path, count: int) -> None:
    for i in range(count):
        (tmp_path / f"f{i}").write_text("")
    problem = foreign_dir_problem(tmp_path)
    assert "'f0', 'f1'" in problem and (" and 2 more" in problem) == (count == 5)
