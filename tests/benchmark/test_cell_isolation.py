"""A cell's method cannot reach another cell or its own cell's scoring, and an output with NaN or inf fails its
cell: real runs through the command line, under the local executor and on a real one-CPU Ray."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from sepbench.cell_guards import training_images
from tests.benchmark.test_ray_executor import assert_nothing_left, marker
from tests.conftest import TINY_GRID, bench
from tests.raycluster import RayNode, auth_env

SCRIBBLE = '''
"""A method that writes into everything it is given: its training images, its validation set, its test input."""
from sepbench import Method, Requirements, register_method, upsample


@register_method("scribble")
class Scribble(Method):
    requires = Requirements(needs_training=True)
    cpu_mixtures_per_s = 1.0  # a long cell by the plan's estimate: Ray, longest first, runs it before fcsae

    def fit(self, data, ctx):
        data.images.sub_(0.5)
        data.validation.y.mul_(2.0)
        data.validation.x.zero_()
        return super().fit(data, ctx)

    def separate(self, y):
        out = upsample(y.sum(dim=1, keepdim=True), self.task.downsample) / float(self.task.weight_matrix().sum())
        y.mul_(-1.0)  # after use: its cell's examples must still show the mixtures it was given
        return out.expand(-1, self.task.n_sources, -1, -1).contiguous()
'''
NONFINITE = '''
"""Methods whose outputs are NaN everywhere, NaN in one source, or infinite at two pixels."""
import torch

from sepbench import Method, register_method, upsample


class Even(Method):
    def separate(self, y):
        out = upsample(y.sum(dim=1, keepdim=True), self.task.downsample) / float(self.task.weight_matrix().sum())
        return out.expand(-1, self.task.n_sources, -1, -1).contiguous()


@register_method("allnan")
class AllNaN(Even):
    def separate(self, y):
        return super().separate(y) * float("nan")


@register_method("halfnan")
class HalfNaN(Even):
    def separate(self, y):
        out = super().separate(y)
        out[:, 1] = float("nan")
        return out


@register_method("someinf")
class SomeInf(Even):
    def separate(self, y):
        out = super().separate(y)
        out[3, 0, 5, 5], out[7, 0, 0, 0] = float("inf"), -float("inf")
        return out
'''
FCSAE = {"method": "fcsae", "params": {"hidden": 64}}
GRID = {**TINY_GRID, "scenarios": {"single": TINY_GRID["scenarios"]["single"]}, "noise": [0.1],
        "test": {"mixtures": 40}, "plugins": ["scribble_demo"]}
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # as a one-CPU Ray task runs: the same numbers


def write_plugin(root: Path, name: str, body: str) -> dict[str, str]:
    """The module ``name`` in ``root/plugins``; the environment that lets the run (and Ray workers) import it."""
    folder = root / "plugins"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(body)
    return {"PYTHONPATH": str(folder)}


def run(root: Path, out: str, grid: dict, env: dict[str, str], *extra: str):
    path = root / f"{out}.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return bench("run", "--grid", str(path), "--out", str(root / out), *extra, cwd=root, env=env)


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> Path:
    """fcsae in a run of its own, the reference of both isolation tests (local and Ray): made once."""
    root = tmp_path_factory.mktemp("alone")
    env = {**write_plugin(root, "scribble_demo", SCRIBBLE), **ONE_THREAD}
    result = run(root, "alone", {**GRID, "methods": [FCSAE]}, env, "--executor", "local")
    assert result.returncode == 0, result.stderr
    return root / "alone"


def records(out: Path) -> dict[str, dict]:
    """Cell records by method."""
    found = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    return {r["config"]["method"]: r for r in found}


def cell_rows(out: Path, record: dict) -> pd.DataFrame:
    return pd.read_parquet(out / "cells" / f"{record['id']}.parquet")


def examples(out: Path, record: dict) -> dict[str, np.ndarray]:
    with np.load(out / "examples" / f"{record['id']}.npz") as npz:
        return dict(npz)


def assert_isolated(alone: Path, after: Path) -> None:
    """fcsae after scribble in one process scores bit for bit as fcsae alone; scribble's cell kept its inputs."""
    first, second = records(alone), records(after)
    assert second["scribble"]["status"] == "done" and second["fcsae"]["status"] == "done"
    assert second["scribble"]["pid"] == second["fcsae"]["pid"]  # one process: the shared MNIST tensor
    assert second["scribble"]["started"] < second["fcsae"]["started"]
    assert second["fcsae"]["id"] == first["fcsae"]["id"]
    pd.testing.assert_frame_equal(cell_rows(alone, first["fcsae"]), cell_rows(after, second["fcsae"]),
                                  check_exact=True)
    # the test observations scribble negated in separate(): its cell's examples still hold the ones it was given
    np.testing.assert_array_equal(examples(after, second["scribble"])["y"], examples(alone, first["fcsae"])["y"])


def test_a_method_writing_into_its_inputs_changes_no_later_cell_locally(tmp_path: Path, alone: Path) -> None:
    env = {**write_plugin(tmp_path, "scribble_demo", SCRIBBLE), **ONE_THREAD}
    after = run(tmp_path, "after", {**GRID, "methods": ["scribble", FCSAE]}, env, "--executor", "local")
    assert after.returncode == 0, after.stderr
    assert_isolated(alone, tmp_path / "after")


def test_a_method_writing_into_its_inputs_changes_no_later_cell_on_a_reused_ray_worker(tmp_path: Path,
                                                                                      alone: Path) -> None:
    env = {**write_plugin(tmp_path, "scribble_demo", SCRIBBLE), **ONE_THREAD}
    cluster_env = auth_env()
    head = RayNode(cluster_env, num_cpus=1, tag="iso")  # one CPU: one cell at a time, on the worker Ray reuses
    try:
        head.wait_started()
        run_env = {**cluster_env, **marker(), **env}
        after = run(tmp_path, "after", {**GRID, "methods": [FCSAE, "scribble"]}, run_env, "--address", head.address)
        assert after.returncode == 0, after.stderr
        assert_nothing_left(run_env)
    finally:
        head.stop()
    assert "1 node(s), 1 CPUs" in after.stderr
    assert_isolated(alone, tmp_path / "after")


def test_nan_or_inf_in_an_output_fails_its_cell_saying_how_many_and_where(tmp_path: Path) -> None:
    env = write_plugin(tmp_path, "nonfinite_demo", NONFINITE)
    grid = {**GRID, "plugins": ["nonfinite_demo"], "methods": ["average", "allnan", "halfnan", "someinf"]}
    result = run(tmp_path, "run", grid, env, "--executor", "local")
    assert result.returncode == 1, result.stderr
    out = tmp_path / "run"
    found = records(out)
    assert found["average"]["status"] == "done"
    values = 40 * 2 * 28 * 28
    expected = {
        "allnan": f"{values:,} NaN and 0 inf value(s) of {values:,}, in sources 0, 1 (of 2)",
        "halfnan": f"{values // 2:,} NaN and 0 inf value(s) of {values:,}, in source 1 (of 2)",
        "someinf": f"0 NaN and 2 inf value(s) of {values:,}, in source 0 (of 2)",
    }
    for method, reason in expected.items():
        record = found[method]
        assert record["status"] == "failed" and record["error"] == f"ValueError: separate() returned {reason}"
        assert not (out / "cells" / f"{record['id']}.parquet").exists()  # nothing scored
        assert record["id"] in result.stderr
    assert "3 cell(s) failed" in result.stderr


def test_training_images_are_the_shared_ones_in_memory_of_the_cells_own():
    shared = torch.rand(100, 28, 28, generator=torch.Generator().manual_seed(0))
    pristine, cpu = shared.clone(), torch.device("cpu")
    first = training_images(shared, 60, cpu)
    assert torch.equal(first, shared[:60]) and first.untyped_storage().data_ptr() != shared.untyped_storage().data_ptr()
    first.sub_(0.5)  # a method writes into them: the shared images keep their values, the next cell its own
    second = training_images(shared, 100, cpu)
    assert torch.equal(shared, pristine) and torch.equal(second, pristine)
    second.untyped_storage().resize_(0)  # a method frees them: the next cell gets memory of its own again
    assert torch.equal(training_images(shared, 100, cpu), pristine)
