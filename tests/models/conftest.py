"""One real run with kept models, shared by the tests of sepbench.models that only read it (copy to tamper)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.benchmark.conftest import clean_registry  # noqa: F401  (a private registry for plugin methods)
from tests.conftest import bench

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # as the in-process checks run: the same kernels
KEPT_GRID = {
    "name": "kept",
    "dataset": {"name": "mnist", "train_size": 5000, "test_size": 500},
    "scenarios": {"single": {"weights": [[1, 1]], "downsample": 2}},
    "noise": [0.01],
    "seeds": [0],
    "train": {"mixtures": 1500, "epochs": 2, "batch_size": 64, "lr": 3.0e-3},
    "test": {"mixtures": 20},
    # a small U-Net beats `average` clearly after 3,000 mixtures; it asks for its model in the grid, `average`
    # only through --keep-models on the second run
    "methods": ["average", {"method": "unet", "params": {"width": 8}, "train": {"keep_model": True}}],
}


@pytest.fixture(scope="session")
def kept_run(tmp_path_factory):
    """``(root, out, first, second, records)``: a run without then with --keep-models (records after both)."""
    root = tmp_path_factory.mktemp("kept")
    grid = root / "kept.yaml"
    grid.write_text(yaml.safe_dump(KEPT_GRID, sort_keys=False))
    out = root / "run"
    first = bench("run", "--grid", str(grid), "--out", str(out), "--executor", "local", cwd=root, env=ONE_THREAD)
    assert first.returncode == 0, first.stderr
    before = records(out)
    second = bench("run", "--grid", str(grid), "--out", str(out), "--executor", "local", "--keep-models",
                   cwd=root, env=ONE_THREAD)
    assert second.returncode == 0, second.stderr
    return root, out, first, second, before, records(out)


def records(out: Path) -> dict[str, dict]:
    """Cell records by label."""
    found = {}
    for path in (out / "cells").glob("*.json"):
        record = json.loads(path.read_text())
        found[record["config"]["label"]] = record
    return found
