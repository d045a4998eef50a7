"""`bench separate` and `bench mix` through the real command line: NumPy and PNG inputs of the right and wrong
sizes, and the demo: two MNIST test digits mixed with the run's scenario, then separated by its kept model."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage import io

from tests.conftest import bench_here


def run_ok(*args: str, cwd: Path):
    result = bench_here(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result


def refused(*args: str, cwd: Path) -> str:
    """Bad input: exit status 2 and one line on stderr, no traceback; returns the line."""
    result = bench_here(*args, cwd=cwd)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    return result.stderr.strip()


def pit_mse(estimates: np.ndarray, sources: np.ndarray) -> float:
    """Mean MSE of (S, H, W) estimates under the best assignment to the sources."""
    return min(float(np.mean((estimates[list(order)] - sources) ** 2))
               for order in itertools.permutations(range(len(sources))))


@pytest.fixture
def examples(kept_run):
    _, out, _, _, _, after = kept_run
    return np.load(out / "examples" / f"{after['unet']['id']}.npz")


def test_separate_npy_and_png_observations_of_the_right_size(kept_run, examples, tmp_path):
    _, out, _, _, _, _ = kept_run
    y = examples["y"]  # (5, 1, 14, 14): the first test mixtures, on the observation's own scale
    np.save(tmp_path / "one.npy", y[0])
    np.save(tmp_path / "stack.npy", y[:3])
    io.imsave(tmp_path / "one.png", np.round(np.clip(y[0, 0] / 2, 0, 1) * 255).astype(np.uint8),
              check_contrast=False)  # an 8-bit image of a [0, 2] observation: one unit is 2/255
    sep = tmp_path / "sep"
    result = run_ok("separate", str(out), str(tmp_path / "one.npy"), str(tmp_path / "stack.npy"), "--entry", "unet",
                    "--out", str(sep), cwd=tmp_path)
    assert "model: unet · single · σ=0.01 · seed 0 (named;" in result.stdout
    one = np.load(sep / "one-sources.npy")
    assert one.shape == (2, 28, 28) and one.dtype == np.float32
    np.testing.assert_allclose(one, examples["estimates"][0], atol=1e-5)  # the run's own estimates
    stack = np.load(sep / "stack-sources.npy")
    assert stack.shape == (3, 2, 28, 28)
    np.testing.assert_allclose(stack, examples["estimates"][:3], atol=1e-5)
    for name in ("one-source1.png", "one-source2.png", "stack-2-source2.png"):
        image = io.imread(sep / name)
        assert image.shape == (28, 28) and image.dtype == np.uint8
    assert (sep / "one-figure.png").stat().st_size > 5000 and (sep / "stack-figure.png").exists()

    run_ok("separate", str(out), str(tmp_path / "one.png"), "--entry", "unet", "--scale", "2/255", "--out", str(sep),
           cwd=tmp_path)
    from_png = np.load(sep / "one-sources.npy")  # the PNG's name wins a clash of stems only when both are given
    assert from_png.shape == (2, 28, 28)
    assert float(np.mean((from_png - examples["estimates"][0]) ** 2)) < 1e-4  # 8-bit quantisation only


def test_inputs_of_the_wrong_size_or_kind_exit_2_with_one_line(kept_run, tmp_path):
    _, out, _, _, _, _ = kept_run
    np.save(tmp_path / "big.npy", np.zeros((16, 16), np.float32))
    np.save(tmp_path / "two.npy", np.zeros((2, 14, 14), np.float32))
    np.save(tmp_path / "ints.npy", np.zeros((1, 14, 14), np.int64))
    io.imsave(tmp_path / "big.png", np.zeros((28, 28), np.uint8), check_contrast=False)
    io.imsave(tmp_path / "rgb.png", np.zeros((14, 14, 3), np.uint8), check_contrast=False)
    io.imsave(tmp_path / "ok.png", np.zeros((14, 14), np.uint8), check_contrast=False)
    sep = tmp_path / "sep"

    def separate(name: str, *extra: str) -> str:
        return refused("separate", str(out), str(tmp_path / name), "--entry", "unet", "--out", str(sep), *extra,
                       cwd=tmp_path)

    wanted = "the model of unet (scenario single) takes 1 channel(s) of 14×14 pixels"
    assert separate("big.npy") == f"error: {tmp_path / 'big.npy'}: an array of shape 1×1×16×16; {wanted} " \
                                  "(shape 1×14×14, or N×1×14×14 for N observations)"
    assert wanted in separate("two.npy") and "shape 1×2×14×14" in separate("two.npy")
    assert "a int64 array; expected float32 observations" in separate("ints.npy")
    assert separate("big.png", "--scale", "2/255").endswith(f"an image of 1 channel(s) of 28×28 pixels; {wanted}")
    assert separate("rgb.png", "--scale", "2/255").endswith(f"an image of 3 channel(s) of 14×14 pixels; {wanted}")
    assert "an image needs --scale" in separate("ok.png")
    assert "--scale: expected a positive number" in separate("ok.png", "--scale", "-1")
    assert "no such file" in separate("absent.npy")
    assert not sep.exists()  # nothing written for bad input


def test_mix_then_separate_recovers_two_test_digits(kept_run, tmp_path):
    """The demo: two MNIST test digits mixed by the run's scenario, then separated by its kept U-Net as well as the
    run scored the same two digits, and better than `average`. The digits are those of the kept test examples on
    which the run's U-Net beat `average` most (on some pairs a model this small does not)."""
    _, out, _, _, _, after = kept_run
    examples = np.load(out / "examples" / f"{after['unet']['id']}.npz")
    scored = {entry: pd.read_parquet(out / "cells" / f"{after[entry]['id']}.parquet").groupby("mixture")["mse"].mean()
              for entry in ("unet", "average")}
    pick = int((scored["unet"] - scored["average"])[:len(examples["x"])].idxmin())
    digits = examples["x"][pick]  # (2, 28, 28) in k/255: 8-bit PNGs hold them exactly
    for i, digit in enumerate(digits):
        io.imsave(tmp_path / f"digit{i}.png", np.round(digit * 255).astype(np.uint8), check_contrast=False)
    result = run_ok("mix", str(out), str(tmp_path / "digit0.png"), str(tmp_path / "digit1.png"), "--sigma", "0.01",
                    "--out", str(tmp_path / "mixture.npy"), cwd=tmp_path)
    assert "wrote" in result.stdout and (tmp_path / "mixture.png").exists()
    mixture = np.load(tmp_path / "mixture.npy")
    assert mixture.shape == (1, 14, 14) and mixture.dtype == np.float32
    clean = (digits.sum(axis=0)).reshape(14, 2, 14, 2).mean(axis=(1, 3))  # 2×2 average pooling of the sum
    assert 0.005 < float(np.std(mixture[0] - clean)) < 0.02  # σ = 0.01 of noise, nothing else

    found = {}
    for entry in ("unet", "average"):
        run_ok("separate", str(out), str(tmp_path / "mixture.npy"), "--entry", entry, "--out",
               str(tmp_path / entry), cwd=tmp_path)
        found[entry] = pit_mse(np.load(tmp_path / entry / "mixture-sources.npy"), digits)
        # the same digits, another draw of σ = 0.01 noise: the MSE the run scored for them
        assert found[entry] == pytest.approx(scored[entry][pick], rel=0.1, abs=5e-4), entry
    assert found["unet"] < found["average"]


def test_mix_refuses_bad_input_in_one_line(kept_run, tmp_path):
    _, out, _, _, _, _ = kept_run
    io.imsave(tmp_path / "d.png", np.zeros((28, 28), np.uint8), check_contrast=False)
    io.imsave(tmp_path / "small.png", np.zeros((20, 20), np.uint8), check_contrast=False)
    digit, small, target = str(tmp_path / "d.png"), str(tmp_path / "small.png"), str(tmp_path / "m.npy")
    assert refused("mix", str(out), digit, "--sigma", "0.01", "--out", target, cwd=tmp_path) == \
        "error: scenario single mixes 2 sources: give 2 images, got 1"
    assert "the scenario mixes grey 28×28 sources" in refused("mix", str(out), digit, small, "--sigma", "0.01",
                                                               "--out", target, cwd=tmp_path)
    assert "no scenario 'dual' (scenarios: single)" in refused("mix", str(out), digit, digit, "--scenario", "dual",
                                                               "--sigma", "0.01", "--out", target, cwd=tmp_path)
    assert "--out: expected a .npy file name" in refused("mix", str(out), digit, digit, "--sigma", "0.01", "--out",
                                                         str(tmp_path / "m.png"), cwd=tmp_path)
    assert not (tmp_path / "m.npy").exists()
