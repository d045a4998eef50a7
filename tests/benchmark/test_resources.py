"""How much of a GPU (and how many CPUs) a cell takes: the method's declaration, a grid entry's ``resources``,
the run's ``--gpu-share``; validated before work starts, and never part of a cell's id or results."""

from __future__ import annotations

import json

import pytest

from sepbench.api import Resources
from sepbench.errors import GridError
from sepbench.grid import parse_grid
from sepbench.plan import plan_grid
from tests.conftest import TINY_GRID, bench_here

FCSAE = {"method": "fcsae", "params": {"hidden": 64}}


def shares(plan) -> dict[str, set[Resources]]:
    found: dict[str, set[Resources]] = {}
    for cell in plan.cells:
        found.setdefault(cell.label, set()).add(cell.resources)
    return found


@pytest.mark.parametrize("resources, expected", [
    ({"gpu": 0.25}, Resources(cpu=1, gpu=0.25)),
    ({"gpu": 1}, Resources(cpu=1, gpu=1.0)),
    ({"gpu": 2, "cpu": 4}, Resources(cpu=4, gpu=2.0)),
    ({"gpu": 0}, Resources(cpu=1, gpu=0.0)),  # whole number 0: this entry's cells stay off GPUs
    ({"cpu": 2}, Resources(cpu=2, gpu=0.0625)),  # fcsae declares gpu 1/16 (measured on an H200)
    ({}, Resources(cpu=1, gpu=0.0625)),
])
def test_an_entrys_resources_override_the_methods(resources, expected):
    grid = parse_grid({**TINY_GRID, "methods": ["average", {**FCSAE, "resources": resources}]}, "g.yaml")
    found = shares(plan_grid(grid))
    assert found["fcsae"] == {expected}
    assert found["average"] == {Resources(cpu=1, gpu=0)}


@pytest.mark.parametrize("resources, message", [
    ({"gpu": 1.5}, "methods[1].resources.gpu: expected a fraction 0 < gpu ≤ 1 or a whole number of GPUs, got 1.5"),
    ({"gpu": -0.25}, "methods[1].resources.gpu: expected a fraction 0 < gpu ≤ 1"),
    ({"gpu": "half"}, "methods[1].resources.gpu: expected a number of GPUs, got 'half'"),
    ({"gpu": True}, "methods[1].resources.gpu: expected a number of GPUs, got True"),
    ({"gpu": float("inf")}, "methods[1].resources.gpu: expected a number of GPUs"),
    ({"cpu": 0.5}, "methods[1].resources.cpu: expected a number of CPUs ≥ 1, got 0.5"),
    ({"cpu": "many"}, "methods[1].resources.cpu: expected float, got 'many'"),
    ({"memory": 4}, "methods[1].resources.memory: unknown key (allowed: cpu, gpu)"),
    ("lots", "methods[1].resources: expected a mapping"),
])
def test_bad_resources_name_the_key(resources, message):
    with pytest.raises(GridError) as info:
        parse_grid({**TINY_GRID, "methods": ["average", {**FCSAE, "resources": resources}]}, "g.yaml")
    assert str(info.value).startswith("g.yaml: ") and message in str(info.value)


def test_the_run_wide_share_changes_gpu_cells_only_and_no_cell_id_changes():
    raw = {**TINY_GRID, "methods": ["average", "ica", {**FCSAE, "resources": {"gpu": 1}},
                                    {**FCSAE, "label": "fcsae-cpu", "resources": {"gpu": 0}}]}
    grid = parse_grid(raw, "g.yaml")
    base = plan_grid(grid)
    quarter = plan_grid(grid, gpu_share=0.25)
    assert shares(quarter)["fcsae"] == {Resources(cpu=1, gpu=0.25)}  # the command line wins over the entry
    assert shares(quarter)["fcsae-cpu"] == {Resources(cpu=1, gpu=0)}  # gpu 0 stays off GPUs
    assert shares(quarter)["average"] == shares(quarter)["ica"] == {Resources(cpu=1, gpu=0)}
    # resources decide where a cell runs, not what it computes: same ids, same configurations
    plain = plan_grid(parse_grid({**raw, "methods": ["average", "ica", FCSAE, {**FCSAE, "label": "fcsae-cpu"}]}))
    for plan in (quarter, plain):
        assert [c.id for c in plan.cells] == [c.id for c in base.cells]
        assert [c.config() for c in plan.cells] == [c.config() for c in base.cells]
    assert all("resources" not in c.config() for c in base.cells)


def test_the_resolved_grid_keeps_the_resources():
    grid = parse_grid({**TINY_GRID, "methods": ["average", {**FCSAE, "resources": {"gpu": 0.25}}]}, "g.yaml")
    resolved = grid.to_dict()
    assert "resources" not in resolved["methods"][0]
    assert resolved["methods"][1]["resources"] == {"gpu": 0.25}
    assert parse_grid(resolved, "again.yaml").methods == grid.methods


@pytest.mark.parametrize("share, fragment", [
    ("1.5", "--gpu-share: expected a fraction 0 < gpu ≤ 1 or a whole number of GPUs, got 1.5"),
    ("0", "--gpu-share: expected a share > 0"),
    ("-1", "--gpu-share: expected a fraction 0 < gpu ≤ 1"),
    ("nan", "--gpu-share: expected a number of GPUs"),
    ("half", "'half' is not a valid float"),
])
def test_a_bad_gpu_share_is_one_line_and_exit_2(tmp_path, write_grid, share, fragment):
    out = tmp_path / "out"
    result = bench_here("run", "--grid", str(write_grid()), "--out", str(out), "--executor", "local",
                   "--gpu-share", share, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert not out.exists()


def test_a_run_resumed_with_another_share_reruns_nothing(tmp_path, write_grid):
    grid = write_grid({"noise": [0.1], "methods": ["average", {**FCSAE, "resources": {"gpu": 0.5}}]})
    out = tmp_path / "run"
    first = bench_here("run", "--grid", str(grid), "--out", str(out), "--executor", "local", "--gpu-share", "0.25",
                  cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["gpu_share"] == 0.25
    metas = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    asked = {m["config"]["method"]: m["resources"] for m in metas}
    assert asked == {"average": {"cpu": 1.0, "gpu": 0.0}, "fcsae": {"cpu": 1.0, "gpu": 0.25}}
    again = bench_here("run", "--grid", str(grid), "--out", str(out), "--executor", "local", "--gpu-share", "1",
                  cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "4 cells planned, 4 already done, 0 to run" in again.stderr
