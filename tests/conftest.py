"""Shared fixtures: a tiny grid and a way to run the real `bench` command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("SEPBENCH_CALIBRATION", "1.0")  # tests measure no machine speed unless they test it

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
