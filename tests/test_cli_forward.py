"""`bench run` on a three-source Poisson–Gaussian scenario, and bad forward-model input, through the command line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import bench
from tests.test_cli import _assert_bad_input

THREE = {"weights": [[1, 1, 1], [0.6, 0.3, 0.1]], "downsample": 2,
         "noise": {"model": "poisson-gaussian", "photons": 200}}


def test_three_source_poisson_gaussian_run_scores_every_method(tmp_path, write_grid):
    grid = write_grid({"scenarios": {"three": THREE}, "noise": [0.01], "test": {"mixtures": 24},
                       "train": {"mixtures": 64, "epochs": 1, "batch_size": 32, "lr": 1.0e-3},
                       "methods": ["average", "lsq", {"method": "fcsae", "params": {"hidden": 32, "loss": "pit"}}]})
    out = tmp_path / "run"
    result = bench("run", "--grid", str(grid), "--out", str(out), "--executor", "local", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    assert sorted(r["config"]["label"] for r in records) == ["average", "fcsae", "lsq"]
    for record in records:
        assert record["status"] == "done"
        assert record["config"]["scenario"]["noise"] == {"model": "poisson-gaussian", "photons": 200.0}
    rows = pd.concat(pd.read_parquet(p) for p in (out / "cells").glob("*.parquet"))
    for label, part in rows.groupby("label"):
        assert len(part) == 24 * 3 and sorted(part.source.unique()) == [0, 1, 2], label
        for _, mixture in part.groupby("mixture"):
            assert sorted(mixture.perm) == [0, 1, 2]  # one output per source: an assignment
        assert np.isfinite(part.mse).all() and 0 < part.mse.mean() < (0.3 if label == "fcsae" else 0.1)  # tiny fcsae
    means = rows.groupby("label").mse.mean()
    assert means["lsq"] < means["average"]  # two different detectors: the informed inverse uses them
    report = bench("report", str(out), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert (out / "report.html").exists()


@pytest.mark.parametrize("changes, fragment", [
    ({"scenarios": {"s": {"weights": [[1, 1]], "noise": {"model": "poisson-gaussian", "photons": -3}}}},
     "scenarios.s.noise.photons: expected a photon count per unit intensity > 0"),
    ({"scenarios": {"s": {"weights": [[1, 1]], "blur": {"psf": "gaussian", "width": -0.5}}}},
     "scenarios.s.blur.width: expected a width > 0"),
    ({"scenarios": {"s": {"weights": [[1, 1]]}, "five": {"weights": [[1, 1, 1, 1, 1]]}},
      "methods": ["average"]}, "scenarios.five: 5 source(s), which no method of the grid separates"),
    ({"scenarios": {"three": {"weights": [[1, 1, 1]]}}, "methods": ["average", "ica"]},
     "ica cannot serve any scenario of the grid (three: needs at least 2 observations"),
    ({"scenarios": {"three": {"weights": [[1, 1, 1], [1, 2, 3]]}}, "methods": ["average", "convsep"]},
     "convsep cannot serve any scenario of the grid (three: separates 2 sources, scenario has 3)"),
])
def test_bad_forward_models_exit_2_with_one_line(tmp_path, write_grid, changes, fragment):
    out = tmp_path / "out"
    result = bench("run", "--grid", str(write_grid(changes)), "--out", str(out), "--executor", "local",
                   cwd=tmp_path)
    _assert_bad_input(result, fragment)
    assert not out.exists()


def test_methods_list_the_sources_each_serves(tmp_path):
    result = bench("methods", "-v", "lsq", "average", "convsep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line and not line.startswith(" ")}
    assert "2–4" in lines["average"] and " any " in lines["lsq"] and lines["convsep"].split()[3] == "2"
    assert "where K < S it is about the even split" in result.stdout
