"""A colour grid end to end through the real command line: natural-patches in RGB (C = 3) with `average`, `lsq`,
`fcsae` and a small `unet`; its report; the kept colour U-Net loaded with ``sepbench.load_model`` and applied by
`bench separate` to a colour .npy stack, one observation and an RGB PNG; `bench mix` from RGB images."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from skimage import io

import sepbench
from tests.conftest import bench
from tests.models.conftest import ONE_THREAD

COLOUR_GRID = {
    "name": "colour",
    "dataset": {"name": "natural-patches", "patch": 16, "color": True, "train_size": 600, "test_size": 100},
    "scenarios": {"single": {"weights": [[1, 1]], "downsample": 2},
                  "dual": {"weights": [[0.7, 0.3], [0.3, 0.7]], "downsample": 2}},
    "noise": [0.01],
    "seeds": [0],
    "train": {"mixtures": 512, "epochs": 2, "batch_size": 64, "lr": 3.0e-3},
    "test": {"mixtures": 40},
    "methods": ["average", "lsq", {"method": "fcsae", "params": {"hidden": 64}},
                {"method": "unet", "params": {"width": 8}, "train": {"keep_model": True}}],
}


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory):
    """``(root, out, summary)``: the colour grid run and reported once for this module."""
    root = tmp_path_factory.mktemp("colour")
    grid = root / "colour.yaml"
    grid.write_text(yaml.safe_dump(COLOUR_GRID, sort_keys=False))
    out = root / "run"
    run = bench("run", "--grid", str(grid), "--out", str(out), "--executor", "local", cwd=root, env=ONE_THREAD)
    assert run.returncode == 0, run.stderr
    report = bench("report", str(out), cwd=root, env=ONE_THREAD)
    assert report.returncode == 0, report.stderr
    return root, out, pd.read_csv(out / "summary.csv")


def unet_single(out) -> dict:
    """The record of the kept U-Net's cell on the one-detector scenario."""
    records = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    return next(r for r in records if r["config"]["label"] == "unet" and r["config"]["scenario"]["name"] == "single")


def _mean_mse(out, label: str, scenario: str) -> float:
    rows = pd.concat(pd.read_parquet(p) for p in (out / "cells").glob("*.parquet"))
    return float(rows[(rows.label == label) & (rows.scenario == scenario)].mse.mean())


def test_a_colour_grid_runs_and_reports_every_method(colour_run):
    root, out, summary = colour_run
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["cells"]) == 8 and not manifest.get("skipped")
    assert set(summary.label) == {"average", "lsq", "fcsae", "unet"}
    assert (out / "report.html").is_file()
    records = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    assert all(r["status"] == "done" for r in records)
    example = np.load(out / "examples" / f"{records[0]['id']}.npz")
    assert example["y"].shape[1:] in ((1, 3, 8, 8), (2, 3, 8, 8)) and example["x"].shape[1:] == (2, 3, 16, 16)
    mse = {(label, s): _mean_mse(out, label, s) for label in ("average", "lsq", "unet") for s in ("single", "dual")}
    print("colour MSE", {f"{k[0]}/{k[1]}": round(v, 5) for k, v in mse.items()})
    assert mse["lsq", "single"] == pytest.approx(mse["average", "single"], rel=1e-4)  # K < S: the even split
    assert mse["lsq", "dual"] < 0.8 * mse["average", "dual"]  # two detectors: the inverse uses them
    assert mse["unet", "single"] < mse["average", "single"]  # trained from the even split, it improves on it


def test_the_kept_colour_model_loads_and_separates_its_test_mixtures(colour_run):
    _, out, _ = colour_run
    record = unet_single(out)
    example = np.load(out / "examples" / f"{record['id']}.npz")
    torch.set_num_threads(1)
    method = sepbench.load_model(out, "unet", scenario="single")
    assert method.task.channels == 3 and method.task.source_shape == (16, 16)
    estimates = method.separate(torch.from_numpy(example["y"])).clamp(0, 1).numpy()
    assert estimates.shape == (len(example["y"]), 2, 3, 16, 16)
    np.testing.assert_allclose(estimates, example["estimates"], atol=1e-6, rtol=0)  # the run's own estimates


def test_bench_separate_takes_colour_npy_and_rgb_png(colour_run, tmp_path):
    root, out, _ = colour_run
    record = unet_single(out)
    y = np.load(out / "examples" / f"{record['id']}.npz")["y"]   # (n, 1, 3, 8, 8)
    np.save(tmp_path / "one.npy", y[0])                         # (K, C, h, w)
    np.save(tmp_path / "stack.npy", y[:3])                      # (N, K, C, h, w)
    rgb = np.round(np.clip(np.moveaxis(y[0, 0], 0, -1) / 2, 0, 1) * 255).astype(np.uint8)
    io.imsave(tmp_path / "photo.png", rgb, check_contrast=False)  # (h, w, 3), one unit is 2/255
    sep = tmp_path / "sep"
    for name, extra in (("one.npy", ()), ("stack.npy", ()), ("photo.png", ("--scale", "2/255"))):
        result = bench("separate", str(out), "--entry", "unet", "--scenario", "single", str(tmp_path / name),
                       *extra, "--out", str(sep), cwd=root)
        assert result.returncode == 0, result.stderr
    one, stack, photo = (np.load(sep / f"{stem}-sources.npy") for stem in ("one", "stack", "photo"))
    assert one.shape == photo.shape == (2, 3, 16, 16) and stack.shape == (3, 2, 3, 16, 16)
    np.testing.assert_allclose(one, stack[0], atol=1e-6)
    assert np.abs(photo - one).max() < 0.05  # the PNG differs by its 8-bit rounding only
    assert io.imread(sep / "one-source1.png").shape == (16, 16, 3)  # estimates written as RGB PNGs
    np.save(tmp_path / "grey.npy", y[0, :, 0])  # (K, h, w): a one-channel observation for a colour model
    result = bench("separate", str(out), "--entry", "unet", "--scenario", "single", str(tmp_path / "grey.npy"),
                   "--out", str(sep), cwd=root)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "3 channels" in result.stderr


def test_bench_mix_makes_a_colour_observation_from_rgb_images(colour_run, tmp_path):
    root, out, _ = colour_run
    gen = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        io.imsave(tmp_path / name, gen.integers(0, 256, (16, 16, 3), dtype=np.uint8), check_contrast=False)
    result = bench("mix", str(out), "--scenario", "dual", "--sigma", "0", str(tmp_path / "a.png"),
                   str(tmp_path / "b.png"), "--out", str(tmp_path / "mixed.npy"), cwd=root)
    assert result.returncode == 0, result.stderr
    mixed = np.load(tmp_path / "mixed.npy")
    a, b = (io.imread(tmp_path / n).astype(np.float64) / 255 for n in ("a.png", "b.png"))
    expected = 0.7 * a + 0.3 * b  # first detector, no noise: the weighted sum, 2×2-pooled, per channel
    pooled = expected.reshape(8, 2, 8, 2, 3).mean(axis=(1, 3))
    assert mixed.shape == (2, 3, 8, 8)
    np.testing.assert_allclose(mixed[0], np.moveaxis(pooled, -1, 0), atol=1e-5)
