"""A model kept by a cell that ran in a Ray worker: its weights travel back in the cell's result, the driver writes
them, and the loaded model reproduces what the worker scored."""

from __future__ import annotations

import numpy as np
import torch

from sepbench import load_model
from sepbench.cell import load_sources
from sepbench.datasets import dataset_key
from sepbench.datasets.mixtures import make_test_set
from tests.benchmark.test_ray_executor import assert_nothing_left, marker
from tests.conftest import TINY_GRID, bench
from tests.models.conftest import records


def test_a_model_kept_in_a_ray_worker_reproduces_the_runs_estimates(tmp_path, write_grid):
    grid = write_grid({"scenarios": {"dual": TINY_GRID["scenarios"]["dual"]}, "noise": [0.1],
                       "methods": [{"method": "fcsae", "params": {"hidden": 64}}]})
    env = marker()
    out = tmp_path / "ray"
    result = bench("run", "--grid", str(grid), "--out", str(out), "--keep-models", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert_nothing_left(env)
    assert "private Ray" in result.stderr
    record = records(out)["fcsae"]
    assert record["threads"] == 1 and set(record["files"]) == {"rows", "examples", "model", "card"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the one-CPU Ray task ran
    try:
        method = load_model(out, "fcsae")
        test = make_test_set(load_sources().test[:500], method.task, 40, dataset_key("mnist", 2000, 500))
        estimates = torch.nan_to_num(method.separate(test.y), nan=0.0).clamp(0, 1)
    finally:
        torch.set_num_threads(threads)
    examples = np.load(out / "examples" / f"{record['id']}.npz")
    assert np.array_equal(estimates[:5].numpy(), examples["estimates"])
