"""Scenarios whose sources each come from their own dataset (`sources: [A, B]`): the grid key, the mixtures (source s
from set s, for training and for the fixed test set), the fixed-order score beside the best assignment, missing and
mis-sized sets, and a real `bench run` + `bench report` on MNIST digits with natural-image patches."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from skimage.metrics import structural_similarity

from sepbench.cell import run_cell, score_sources
from sepbench.datasets import base
from sepbench.datasets.base import Dataset, DatasetNotFound, SourceImages, register_dataset
from sepbench.datasets.mixtures import TrainingData, draw_from_sets, make_test_set
from sepbench.datasets.registry import get_dataset
from sepbench.errors import GridError, UserError
from sepbench.grid import parse_grid
from sepbench.plan import plan_grid
from sepbench.source_sets import cell_images
from sepbench.sources import set_aside_missing
from tests.conftest import bench

LOW, HIGH = 0.5, 0.5  # set "lowset" has pixels below LOW, set "highset" above HIGH: a pixel says its set


class LowSet(Dataset):
    """16×16 random images in [0, 0.5): 200 training, 60 test."""

    image_size = (16, 16)
    train_count, test_count, labelled = 200, 60, False
    seed, low, high = 0, 0.0, LOW

    def present(self, data_dir):
        return True

    def load(self, data_dir, *, download=True):
        gen = torch.Generator().manual_seed(self.seed)
        span = self.high - self.low
        train = self.low + span * torch.rand(self.train_count, 1, 16, 16, generator=gen) * 0.999
        test = self.low + span * torch.rand(self.test_count, 1, 16, 16, generator=gen) * 0.999
        return SourceImages(self.name, train, None, test, None, "generated")


class HighSet(LowSet):
    """16×16 random images in (0.5, 1]: 150 training, 40 test."""

    train_count, test_count = 150, 40
    seed, low, high = 1, 1.0, HIGH  # low > high: values from 1 down towards 0.5


class Small12(LowSet):
    image_size = (12, 12)

    def load(self, data_dir, *, download=True):
        return SourceImages(self.name, torch.rand(200, 1, 12, 12), None, torch.rand(60, 1, 12, 12), None, "gen")


class AbsentSet(LowSet):
    def present(self, data_dir):
        return False

    def missing_message(self, data_dir):
        return f"absentset: put absent.bin in {data_dir}"

    def load(self, data_dir, *, download=True):
        raise DatasetNotFound(f"absent.bin not in {data_dir}")


SETS = {"lowset": LowSet, "highset": HighSet, "small12": Small12, "absentset": AbsentSet}


@pytest.fixture
def sets():
    """The datasets above, registered for one test and removed afterwards."""
    for name, cls in SETS.items():
        register_dataset(name)(cls)
    yield
    for name in SETS:
        base._DATASETS.pop(name, None)
        base._DATASET_ORIGINS.pop(name, None)


def grid(scenarios: dict, methods: list | None = None, **changes) -> dict:
    return {"name": "sets", "dataset": "lowset", "scenarios": scenarios, "noise": [0.01], "seeds": [0, 1],
            "train": {"mixtures": 64, "epochs": 1, "batch_size": 32}, "test": {"mixtures": 30},
            "methods": methods or ["average"], **changes}


TWO = {"weights": [[1, 1]], "downsample": 2, "sources": ["lowset", "highset"]}
PLAIN = {"weights": [[1, 1]], "downsample": 2}


def test_the_sources_key_plans_cells_naming_each_set_and_leaves_other_cell_ids_alone(sets):
    plan = plan_grid(parse_grid(grid({"two": TWO, "plain": PLAIN})))
    two = [c for c in plan.cells if c.scenario.name == "two"]
    assert [s["name"] for s in two[0].config()["scenario"]["sources"]] == ["lowset", "highset"]
    assert two[0].config()["scenario"]["sources"][1] == {"name": "highset", "train_size": 150, "test_size": 40}
    assert [d.name for d in two[0].datasets] == ["lowset", "highset"] and two[0].task.n_sources == 2
    plain = [c for c in plan.cells if c.scenario.name == "plain"]
    assert "sources" not in plain[0].config()["scenario"]
    alone = plan_grid(parse_grid(grid({"plain": PLAIN})))
    assert [c.id for c in alone.cells] == [c.id for c in plain]  # a `sources:` scenario beside it changes nothing
    assert len({c.id for c in two} | {c.id for c in plain}) == 2  # average: one seed stands for all
    # the resolved grid written to the run directory reads back into the same cells
    again = plan_grid(parse_grid(parse_grid(grid({"two": TWO, "plain": PLAIN})).to_dict()))
    assert [c.id for c in again.cells] == [c.id for c in plan.cells]
    swapped = plan_grid(parse_grid(grid({"two": {**TWO, "sources": ["highset", "lowset"]}})))
    assert swapped.cells[0].id != two[0].id  # the roles are part of the cell


def test_test_mixtures_take_source_s_from_set_s_and_stay_fixed(sets, tmp_path):
    cell = next(c for c in plan_grid(parse_grid(grid({"two": TWO}, ["fcsae"]))).cells)
    images = cell_images(tmp_path, cell.dataset, cell.scenario.sources)
    low = get_dataset("lowset").load(tmp_path)
    high = get_dataset("highset").load(tmp_path)
    assert images.distinct and images.test_sets == ((0, 60), (60, 40)) and images.train_sets == ((0, 200), (200, 150))
    test = make_test_set(images.test, cell.task, 30, images.key, sets=images.test_sets)
    assert test.x.shape == (30, 2, 16, 16)
    assert float(test.x[:, 0].max()) < LOW and float(test.x[:, 1].min()) > HIGH  # each pixel tells its set

    def rows_of(batch: torch.Tensor, pool: torch.Tensor) -> list[int]:  # the pool image each source is, exactly
        flat = pool.flatten(1)
        return [int(torch.nonzero((flat == b.flatten()).all(dim=1))[0]) for b in batch]

    assert len(set(rows_of(test.x[:, 0], low.test[:, 0]))) == 30  # 30 distinct images of set A's test split
    assert len(set(rows_of(test.x[:, 1], high.test[:, 0]))) == 30  # and 30 of set B's (40 ≥ 30: no repeats)
    again = make_test_set(images.test, cell.task, 30, images.key, sets=images.test_sets)
    assert torch.equal(again.x, test.x) and torch.equal(again.y, test.y)  # fixed: the same for every method/seed
    data = TrainingData(images.training(torch.device("cpu")), cell.task, 64, seed=3, sets=images.train_sets)
    batch = next(data.epoch(64))
    assert len(rows_of(batch.x[:, 0], low.train[:, 0])) == len(rows_of(batch.x[:, 1], high.train[:, 0])) == 64
    assert float(batch.x[:, 0].max()) < LOW and float(data.validation.x[:, 1].min()) > HIGH
    training = images.training(torch.device("cpu"))
    training.zero_()  # the cell's own copy: the shared images are untouched
    assert float(cell_images(tmp_path, cell.dataset, cell.scenario.sources).train_parts[0].max()) > 0


def test_a_set_named_by_two_sources_gives_distinct_partners_and_is_held_once():
    gen = torch.Generator().manual_seed(0)
    pairs = draw_from_sets(((0, 5), (5, 7), (0, 5)), 200, gen)
    assert pairs.shape == (200, 3)
    assert pairs[:, 0].max() < 5 and pairs[:, 1].min() >= 5 and pairs[:, 1].max() < 12 and pairs[:, 2].max() < 5
    assert bool((pairs[:, 0] != pairs[:, 2]).all())


def test_fixed_order_score_against_the_best_assignment_on_a_hand_made_case():
    gen = torch.Generator().manual_seed(5)
    sources = torch.rand(3, 2, 12, 12, generator=gen, dtype=torch.float64)
    noise = 0.05 * torch.randn(sources.shape, generator=gen, dtype=torch.float64)
    estimates = (sources + noise).clamp(0, 1)
    estimates[1] = estimates[1].flip(0)  # mixture 1: outputs in the other order
    rows = score_sources(estimates, sources, fixed=True)
    assert rows["perm"].tolist() == [0, 1, 1, 0, 0, 1]
    for row in rows.itertuples():
        own = estimates[row.mixture, row.source].numpy()
        ref = sources[row.mixture, row.source].numpy()
        assert row.mse_fixed == pytest.approx(((own - ref) ** 2).mean(), rel=1e-12)
        assert row.psnr_fixed == pytest.approx(-10 * np.log10(((own - ref) ** 2).mean()), rel=1e-12)
        assert row.ssim_fixed == pytest.approx(structural_similarity(own, ref, data_range=1.0), abs=1e-5)
    per_mixture = rows.groupby("mixture")[["mse", "mse_fixed"]].sum()
    assert (per_mixture["mse_fixed"] >= per_mixture["mse"]).all()
    identity = rows[rows["mixture"] != 1]  # the identity assignment: the same numbers
    assert (identity["mse_fixed"] == identity["mse"]).all() and (identity["ssim_fixed"] == identity["ssim"]).all()
    swapped = rows[rows["mixture"] == 1]
    assert (swapped["mse_fixed"] > 10 * swapped["mse"]).all()
    assert "mse_fixed" not in score_sources(estimates, sources).columns  # one set for all sources: no such column
    colour = score_sources(estimates[:, :, None].expand(-1, -1, 3, -1, -1), sources[:, :, None].expand(-1, -1, 3, -1,
                                                                                                   -1), fixed=True)
    assert np.allclose(colour[["mse_fixed", "ssim_fixed"]].to_numpy(), rows[["mse_fixed", "ssim_fixed"]].to_numpy())


def test_a_cell_with_one_set_per_source_scores_both_orders(sets, tmp_path):
    plan = plan_grid(parse_grid(grid({"two": TWO, "plain": PLAIN}, ["average"])))
    by_scenario = {c.scenario.name: run_cell(c, tmp_path, device=torch.device("cpu")) for c in plan.cells}
    two, plain = by_scenario["two"], by_scenario["plain"]
    assert two.status == "done" and plain.status == "done", (two.meta.get("error"), plain.meta.get("error"))
    assert {"mse_fixed", "psnr_fixed", "ssim_fixed"} <= set(two.rows) and "mse_fixed" not in plain.rows
    # average gives both outputs the same image: every assignment ties, the identity is chosen, both orders agree
    assert (two.rows["perm"] == two.rows["source"]).all() and np.allclose(two.rows["mse_fixed"], two.rows["mse"])
    assert (two.examples["x"][:, 0] < LOW).all() and (two.examples["x"][:, 1] > HIGH).all()


@pytest.mark.parametrize("scenario, key, fragment", [
    ({**TWO, "sources": ["lowset", "small12"]}, "scenarios.two.sources",
     "sources of different sizes in one scenario (lowset 16×16×1, small12 12×12×1"),
    ({**TWO, "sources": ["lowset", "highset", "lowset"]}, "scenarios.two.sources", "3 dataset(s) for 2 source(s)"),
    ({**TWO, "dataset": "lowset"}, "scenarios.two", "give either 'dataset'"),
    ({**TWO, "sources": ["lowset", "nope"]}, "scenarios.two.sources[1]", "unknown dataset 'nope'"),
    ({**TWO, "sources": "lowset"}, "scenarios.two.sources", "expected a non-empty list"),
    ({**TWO, "downsample": 3}, "scenarios.two.downsample", "must divide the image size 16×16 of lowset"),
])
def test_bad_sources_keys_are_one_grid_error(sets, scenario, key, fragment):
    with pytest.raises(GridError) as info:
        parse_grid(grid({"two": scenario}), "g.yaml")
    assert str(info.value).startswith(f"g.yaml: {key}: ") and fragment in str(info.value), str(info.value)


def test_the_papers_pairs_refuse_a_scenario_with_one_set_per_source(sets):
    with pytest.raises(GridError, match="a scenario with 'sources' \\(one set per source\\) cannot use them"):
        parse_grid(grid({"two": {**TWO, "sources": ["mnist", "mnist"]}}, dataset="mnist",
                        test={"mixtures": 30, "pairs": "paper"}), "g.yaml")


def test_cells_with_a_missing_set_are_set_aside_with_its_line(sets, tmp_path):
    gone = {**TWO, "sources": ["lowset", "absentset"]}
    plan = plan_grid(parse_grid(grid({"two": TWO, "gone": gone})))
    kept, missing = set_aside_missing(plan, tmp_path)
    assert [c.scenario.name for c in kept.cells] == ["two"]
    assert [(m.name, m.cells, m.message) for m in missing] == [
        ("absentset", 1, f"absentset: put absent.bin in {tmp_path}")]
    with pytest.raises(UserError, match="^no cell of the grid can run: absentset: put absent.bin in"):
        set_aside_missing(plan_grid(parse_grid(grid({"gone": gone}))), tmp_path)


def test_sources_of_different_sizes_exit_2_in_one_line_before_any_work(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(json.dumps(grid({"two": {**TWO, "sources": ["mnist", "natural-patches"]}}, dataset="mnist")))
    out = tmp_path / "out"
    result = bench("run", "--grid", str(path), "--out", str(out), "--executor", "local", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: scenarios.two.sources: sources of different "
                                                   "sizes in one scenario (mnist 28×28×1, natural-patches 32×32×1")
    assert not out.exists()


def test_digits_with_natural_patches_run_and_report_with_the_fixed_order_score(tmp_path):
    """A real run: MNIST digits as source 0, natural-image patches (28×28) as source 1; average, lsq and a tiny
    fcsae that learns fixed-order outputs; then the report."""
    patches = {"name": "natural-patches", "patch": 28, "train_size": 2000, "test_size": 500}
    digits = {"name": "mnist", "train_size": 2000, "test_size": 500}
    spec = grid({"digit+patch": {"weights": [[1, 1]], "downsample": 2, "sources": [digits, patches]}},
                ["average", "lsq", {"method": "fcsae", "params": {"hidden": 32, "loss": "fixed"}}],
                dataset=digits, seeds=[0])
    path = tmp_path / "g.yaml"
    path.write_text(json.dumps(spec))
    out = tmp_path / "run"
    result = bench("run", "--grid", str(path), "--out", str(out), "--executor", "local", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "classifier" not in result.stderr  # the digit classifier scores one set's pairs: not these cells
    rows = pd.concat([pd.read_parquet(p) for p in (out / "cells").glob("*.parquet")])
    assert set(rows["label"]) == {"average", "lsq", "fcsae"} and len(rows) == 3 * 30 * 2
    assert rows[["mse_fixed", "psnr_fixed", "ssim_fixed"]].notna().all().all()
    per_mixture = rows.groupby(["label", "mixture"])[["mse", "mse_fixed"]].sum()
    assert (per_mixture["mse_fixed"] >= per_mixture["mse"] - 1e-12).all()
    mnist_test = get_dataset("mnist").load(tmp_path / "none").test[:500, 0].flatten(1)
    patch_test = get_dataset("natural-patches", patch=28).load(tmp_path / "none").test[:500, 0].flatten(1)
    for npz in (out / "examples").glob("*.npz"):  # the kept test mixtures: source 0 a digit, source 1 a patch
        x = torch.from_numpy(np.load(npz)["x"])
        assert all(bool((mnist_test == img.flatten()).all(dim=1).any()) for img in x[:, 0])
        assert all(bool((patch_test == img.flatten()).all(dim=1).any()) for img in x[:, 1])
        assert not any(bool((mnist_test == img.flatten()).all(dim=1).any()) for img in x[:, 1])
    result = bench("report", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    fixed = pd.read_csv(out / "fixed_order.csv")
    assert set(fixed["label"]) == {"average", "lsq", "fcsae"}
    assert (fixed["mse_fixed_mean"] >= fixed["mse_mean"] - 1e-12).all()
    summary = pd.read_csv(out / "summary.csv").set_index("label")
    assert np.allclose(fixed.set_index("label")["mse_mean"], summary.loc[fixed["label"], "mse_mean"])
    page = (out / "report.md").read_text()
    assert "## Fixed order" in page and "| MSE best | MSE fixed |" in page
