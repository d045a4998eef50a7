"""``bench run --only``: a chosen part of a grid runs now, the rest waits (its checkpoints kept) for a later run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sepbench.errors import UserError
from sepbench.grid import parse_grid
from sepbench.plan import plan_grid
from sepbench.selection import parse_selection
from tests.conftest import TINY_GRID, bench_here

GRID = {**TINY_GRID, "methods": ["average", {"method": "fcsae", "label": "fcsae-small", "params": {"hidden": 64}}]}


def _cells():
    return plan_grid(parse_grid(GRID)).cells


def _chosen(*terms: str) -> list[str]:
    selection = parse_selection(terms, _cells())
    return sorted(c.describe() for c in _cells() if selection.matches(c))


def test_terms_of_different_keys_all_apply_and_values_of_one_key_are_alternatives() -> None:
    assert len(_cells()) == 8  # 2 methods × 2 scenarios × 2 σ × 1 seed
    assert len(_chosen()) == 8  # no term: every cell
    assert _chosen("method=average", "scenario=dual") == ["average · dual · σ=0.01 · seed 0",
                                                          "average · dual · σ=0.1 · seed 0"]
    assert len(_chosen("method=fcsae")) == 4  # the registry name selects the entry labelled fcsae-small
    assert _chosen("method=fcsae-small", "sigma=0.1,0.01", "scenario=single") == [
        "fcsae-small · single · σ=0.01 · seed 0", "fcsae-small · single · σ=0.1 · seed 0"]
    assert _chosen("sigma=0.1", "sigma=0.01", "seed=0") == _chosen()  # repeated key: values joined
    assert parse_selection(["scenario=dual", "seed=0"], _cells()).describe() == ["scenario=dual", "seed=0"]


@pytest.mark.parametrize(("term", "said"), [
    ("seeds=0", "KEY one of method, scenario, sigma, seed"),
    ("method", "expected KEY=VALUE"),
    ("method=unet", "no method 'unet' in this grid (it has average, fcsae, fcsae-small)"),
    ("scenario=paper", "no scenario 'paper' in this grid (it has dual, single)"),
    ("sigma=0.5", "no sigma 0.5 in this grid (it has 0.01, 0.1)"),
    ("sigma=high", "'high' is not a number"),
    ("seed=1", "no seed 1 in this grid (it has 0)"),
    ("seed=0.5", "'0.5' is not a whole number"),
    ("seed=0,", "an empty value"),
])
def test_a_term_that_names_nothing_of_the_grid_is_refused(term: str, said: str) -> None:
    with pytest.raises(UserError, match="--only") as caught:
        parse_selection([term], _cells())
    assert said in str(caught.value)


def test_a_bad_term_on_the_command_line_is_one_line_and_exit_2_before_anything_is_written(
        tmp_path: Path, write_grid) -> None:
    grid = write_grid(GRID)
    result = bench_here("run", "--grid", str(grid), "--executor", "local", "--out", str(tmp_path / "run"),
                        "--only", "method=unet", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --only 'method=unet': no method 'unet' in this grid (it has average, fcsae, fcsae-small)"]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_only_the_selected_cells_run_the_others_keep_their_checkpoints_and_a_full_rerun_completes_the_grid(
        tmp_path: Path, write_grid) -> None:
    grid = write_grid(GRID)
    run = tmp_path / "run"
    cells = _cells()
    waiting = next(c for c in cells if c.label == "fcsae-small" and c.scenario.name == "dual")
    start = bench_here("run", "--grid", str(grid), "--executor", "local", "--out", str(run),
                       "--only", "method=average", "--only", "scenario=single", cwd=tmp_path)
    assert start.returncode == 0, start.stderr
    assert "8 cells planned, 0 already done, 2 to run" in start.stderr
    assert len(list((run / "cells").glob("*.json"))) == 2
    (run / "checkpoints").mkdir()
    planted = run / "checkpoints" / f"{waiting.id}.pt"
    planted.write_bytes(b"an earlier session's epoch")  # stands for a checkpoint of a cell left for later

    first = bench_here("run", "--grid", str(grid), "--executor", "local", "--out", str(run),
                       "--only", "scenario=single", "--only", "method=average,fcsae-small", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "8 cells planned, 2 already done, 2 to run" in first.stderr
    assert "--only scenario=single method=average,fcsae-small: 4 more cells of the grid wait" in first.stderr
    assert "4 cells of the grid not run (--only)" in first.stderr
    recorded = {p.stem for p in (run / "cells").glob("*.json")}
    assert recorded == {c.id for c in cells if c.scenario.name == "single"}
    assert planted.read_bytes() == b"an earlier session's epoch"  # a deferred cell's checkpoint stays
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["only"] == ["scenario=single", "method=average,fcsae-small"]
    assert sorted(manifest["deferred"]) == sorted(c.id for c in cells if c.scenario.name == "dual")

    rest = bench_here("run", "--grid", str(grid), "--executor", "local", "--out", str(run), cwd=tmp_path)
    assert rest.returncode == 0, rest.stderr
    assert "8 cells planned, 4 already done, 4 to run" in rest.stderr
    assert "not run (--only)" not in rest.stderr
    assert {p.stem for p in (run / "cells").glob("*.json")} == {c.id for c in cells}
    assert not (run / "checkpoints").exists()  # the grid is complete: no checkpoint is left
    manifest = json.loads((run / "manifest.json").read_text())
    assert "only" not in manifest and "deferred" not in manifest
