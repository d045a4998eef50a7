"""The dataset registry and the grid's `dataset:` keys: names, options, sizes and channels flowing into cells, bad
input in one line, and today's grids keeping their cell ids."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from sepbench.cell import score_sources
from sepbench.datasets import base, registry
from sepbench.datasets.base import Dataset, DatasetNotFound, SourceImages, register_dataset
from sepbench.datasets.mixtures import mix
from sepbench.datasets.registry import available_datasets, broken_datasets, dataset_origin, get_dataset
from sepbench.errors import GridError, UserError
from sepbench.grid import load_grid, parse_grid
from sepbench.plan import plan_grid
from sepbench.sources import set_aside_missing
from tests.conftest import TINY_GRID, bench

IDS_BEFORE = Path(__file__).parents[1] / "benchmark" / "cell_ids_before_datasets.json"


class Tiny16(Dataset):
    """16×16 noise images, 1 or 3 channels: an in-process dataset for these tests."""

    image_size = (16, 16)
    train_count, test_count, labelled = 300, 50, False
    options_help = {"color": "3 channels"}

    def __init__(self, **options):
        super().__init__(**options)
        self.channels = 3 if options.get("color") else 1

    def present(self, data_dir):
        return True

    def load(self, data_dir, *, download=True):
        gen = torch.Generator().manual_seed(0)
        c = self.channels
        return SourceImages(self.name, torch.rand(300, c, 16, 16, generator=gen), None,
                            torch.rand(50, c, 16, 16, generator=gen), None, "generated")


class Absent(Tiny16):
    def present(self, data_dir):
        return False

    def missing_message(self, data_dir):
        return f"absent: put absent.bin in {data_dir}"

    def load(self, data_dir, *, download=True):
        raise DatasetNotFound(f"absent.bin not in {data_dir}")


@pytest.fixture
def test_datasets():
    """Two datasets registered for one test, removed afterwards."""
    register_dataset("tiny16")(Tiny16)
    register_dataset("absent")(Absent)
    yield
    for name in ("tiny16", "absent"):
        base._DATASETS.pop(name, None)
        base._DATASET_ORIGINS.pop(name, None)


def grid_with(**changes) -> dict:
    return {**TINY_GRID, **changes}


def test_mnist_is_registered_built_in_with_its_shape():
    assert "mnist" in available_datasets() and dataset_origin("mnist") == "built-in"
    mnist = get_dataset("mnist")
    assert (mnist.image_size, mnist.channels, mnist.train_count, mnist.test_count, mnist.labelled) == \
        ((28, 28), 1, 60000, 10000, True)


def test_unknown_dataset_and_unknown_option_are_one_line_naming_the_known():
    with pytest.raises(UserError, match=r"^unknown dataset 'nope' \(known: .*mnist"):
        get_dataset("nope")
    with pytest.raises(UserError, match=r"dataset 'mnist': unknown option\(s\) color \(it takes: none\)"):
        get_dataset("mnist", color=True)


def test_broken_entry_points_are_recorded_not_fatal(monkeypatch):
    entries = [importlib.metadata.EntryPoint("ghost", "no_such_module_xyz:Thing", registry.ENTRY_POINT_GROUP),
               importlib.metadata.EntryPoint("notaset", "json:dumps", registry.ENTRY_POINT_GROUP),
               importlib.metadata.EntryPoint("mnist", f"{__name__}:Tiny16", registry.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [e for e in entries if e.group == group])
    monkeypatch.setitem(registry._state, "entry_points_loaded", False)
    monkeypatch.setattr(registry, "_BROKEN", [])
    assert "mnist" in available_datasets() and available_datasets()["mnist"].__name__ == "Mnist"
    broken = {b.name: b.error for b in broken_datasets()}
    assert broken["ghost"].startswith("cannot be imported: ModuleNotFoundError")
    assert "not a subclass of sepbench.datasets.base.Dataset" in broken["notaset"]
    assert "'mnist' is already taken by sepbench.datasets.mnist.Mnist" in broken["mnist"]
    with pytest.raises(UserError, match="dataset 'ghost' comes from a broken plugin"):
        get_dataset("ghost")


def test_todays_grids_keep_their_cell_ids():
    """Ids recorded before datasets became plugins (tests/benchmark/cell_ids_before_datasets.json)."""
    before = json.loads(IDS_BEFORE.read_text())
    for name in ("quick", "default", "paper"):
        assert sorted(c.id for c in plan_grid(load_grid(name)).cells) == before[name], name
    assert sorted(c.id for c in plan_grid(parse_grid(TINY_GRID)).cells) == before["tiny"]


def test_dataset_forms_and_a_scenario_naming_the_default_give_the_same_cells():
    ids = sorted(c.id for c in plan_grid(parse_grid(TINY_GRID)).cells)
    mapping = {"name": "mnist", "train_size": 2000, "test_size": 500}
    named = {k: {**v, "dataset": mapping} for k, v in TINY_GRID["scenarios"].items()}
    assert sorted(c.id for c in plan_grid(parse_grid(grid_with(scenarios=named))).cells) == ids
    bare = parse_grid(grid_with(dataset="mnist", test={"mixtures": 40}))
    assert (bare.dataset.train_size, bare.dataset.test_size) == (60000, 10000)  # all MNIST has
    assert bare.to_dict()["dataset"] == {"name": "mnist", "train_size": 60000, "test_size": 10000}


def test_size_and_channels_flow_from_the_dataset_into_tasks(test_datasets):
    dual = [[1, 1], [0.6, 0.4]]
    scenarios = {"digits": {"weights": dual, "downsample": 2},
                 "noise16": {"weights": dual, "downsample": 4, "dataset": "tiny16"},
                 "colour16": {"weights": dual, "downsample": 2, "dataset": {"name": "tiny16", "color": True}}}
    grid = parse_grid(grid_with(scenarios=scenarios, methods=["average", "ica"]))
    plan = plan_grid(grid)
    tasks = {(c.label, c.scenario.name): c.task for c in plan.cells}
    for label in ("average", "ica"):
        digits, noise16 = tasks[label, "digits"], tasks[label, "noise16"]
        assert (digits.source_shape, digits.observation_shape, digits.channels) == ((28, 28), (14, 14), 1)
        assert (noise16.source_shape, noise16.observation_shape, noise16.channels) == ((16, 16), (4, 4), 1)
    colour = tasks["average", "colour16"]  # average declares colour; ica does not
    assert (colour.source_shape, colour.observation_shape, colour.channels) == ((16, 16), (8, 8), 3)
    assert ("ica", "colour16") not in tasks
    assert [(s.label, s.scenario, s.reason) for s in plan.skipped] == [
        ("ica", "colour16", "takes single-channel sources only (it does not declare Requirements(color=True)), "
                            "scenario has 3 channels")]
    configs = {c.scenario.name: c.config()["dataset"] for c in plan.cells}
    assert configs["noise16"] == {"name": "tiny16", "train_size": 300, "test_size": 50}
    assert grid.to_dict()["scenarios"]["colour16"]["dataset"] == {"name": "tiny16", "train_size": 300,
                                                                  "test_size": 50, "color": True}


@pytest.mark.parametrize("changes, key, fragment", [
    ({"dataset": "nope"}, "dataset", "unknown dataset 'nope' (known: "),
    ({"dataset": {"name": "mnist", "train_size": 70000}}, "dataset.train_size",
     "mnist has 60000 training and 10000 test images, 70000 training images asked for"),
    ({"dataset": {"name": "mnist", "test_size": 10001}}, "dataset.test_size", "10001 test images asked for"),
    ({"dataset": {"name": "mnist", "color": True}}, "dataset.mnist", "unknown option(s) color"),
    ({"dataset": {"name": "mnist", "train_size": 0}}, "dataset.train_size", "expected a positive integer"),
    ({"dataset": 3}, "dataset", "expected a dataset name or a mapping"),
    ({"scenarios": {"bad": {"weights": [[1, 1]], "downsample": 5}}}, "scenarios.bad.downsample",
     "must divide the image size 28×28 of mnist, got 5"),
    ({"scenarios": {"bad": {"weights": [[1, 1]], "dataset": "nope"}}}, "scenarios.bad.dataset",
     "unknown dataset 'nope'"),
    ({"scenarios": {"bad": {"weights": [[1, 1]], "downsample": 3, "dataset": "tiny16"}}},
     "scenarios.bad.downsample", "must divide the image size 16×16 of tiny16, got 3"),
    ({"scenarios": {"bad": {"weights": [[1, 1]], "dataset": {"name": "tiny16", "color": [1]}}}},
     "scenarios.bad.dataset.color", "expected a plain value"),
])
def test_bad_dataset_keys_are_one_grid_error(test_datasets, changes, key, fragment):
    with pytest.raises(GridError) as info:
        parse_grid(grid_with(**changes), "g.yaml")
    assert str(info.value).startswith(f"g.yaml: {key}: ") and fragment in str(info.value), str(info.value)


@pytest.mark.parametrize("changes, fragment", [
    ({"dataset": "nope"},
     "dataset: unknown dataset 'nope' (known: cifar10, fashion-mnist, kmnist, mnist, natural-patches"),
    ({"dataset": {"name": "mnist", "train_size": 60001}}, "60001 training images asked for"),
    ({"scenarios": {"bad": {"weights": [[1, 1]], "downsample": 3}}}, "must divide the image size 28×28 of mnist"),
])
def test_bad_dataset_keys_exit_2_in_one_line_before_any_work(tmp_path, write_grid, changes, fragment):
    out = tmp_path / "out"
    result = bench("run", "--grid", str(write_grid(changes)), "--out", str(out), "--executor", "local", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert not out.exists()


def test_cells_of_a_missing_dataset_are_set_aside_and_a_plan_of_none_is_bad_input(test_datasets, tmp_path):
    scenarios = {"here": {"weights": [[1, 1]], "downsample": 2, "dataset": "tiny16"},
                 "gone": {"weights": [[1, 1]], "downsample": 2, "dataset": "absent"}}
    plan = plan_grid(parse_grid(grid_with(scenarios=scenarios, methods=["average"])))
    kept, missing = set_aside_missing(plan, tmp_path)
    assert [c.scenario.name for c in kept.cells] == ["here", "here"]  # two σ
    assert [(m.name, m.cells, m.message) for m in missing] == [("absent", 2, f"absent: put absent.bin in {tmp_path}")]
    only_gone = plan_grid(parse_grid(grid_with(scenarios={"gone": scenarios["gone"]}, methods=["average"])))
    with pytest.raises(UserError, match="^no cell of the grid can run: absent: put absent.bin in"):
        set_aside_missing(only_gone, tmp_path)


def test_one_channel_mixes_exactly_as_before_and_colour_mixes_channel_by_channel():
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(40, 1, 12, 12, generator=gen)
    pairs = torch.tensor([[0, 1], [2, 3], [4, 5]])
    weights = torch.tensor([[1.0, 1.0], [0.7, 0.3]])
    now = mix(images, pairs, weights, 2, 0.1, torch.Generator().manual_seed(7))
    then = mix(images[:, 0], pairs, weights, 2, 0.1, torch.Generator().manual_seed(7))  # (N, H, W): today's images
    assert now.x.shape == (3, 2, 12, 12) and now.y.shape == (3, 2, 6, 6)
    assert all(torch.equal(a, b) for a, b in zip(now, then, strict=True))
    colour = torch.rand(40, 3, 12, 12, generator=gen)
    batch = mix(colour, pairs, weights, 2, 0.0, torch.Generator())
    assert batch.x.shape == (3, 2, 3, 12, 12) and batch.y.shape == (3, 2, 3, 6, 6)
    assert batch.z.shape == (3, 2, 3, 12, 12)
    for c in range(3):
        alone = mix(colour[:, c:c + 1], pairs, weights, 2, 0.0, torch.Generator())
        assert torch.allclose(batch.y[:, :, c], alone.y) and torch.equal(batch.x[:, :, c], alone.x)


def test_colour_scores_take_mse_over_all_channels_and_ssim_per_channel():
    gen = torch.Generator().manual_seed(2)
    sources = torch.rand(4, 2, 3, 16, 16, generator=gen)
    estimates = (sources.flip(1) + 0.1 * torch.randn(sources.shape, generator=gen)).clamp(0, 1)  # swapped outputs
    rows = score_sources(estimates, sources)
    assert rows["perm"].tolist() == [1, 0] * 4
    for (m, s), row in zip([(m, s) for m in range(4) for s in range(2)], rows.itertuples(), strict=True):
        est, ref = estimates[m, 1 - s].double().numpy(), sources[m, s].double().numpy()
        assert row.mse == pytest.approx(((est - ref) ** 2).mean(), rel=1e-12)
        ssim = np.mean([structural_similarity(est[c], ref[c], data_range=1.0) for c in range(3)])
        assert row.ssim == pytest.approx(ssim, abs=1e-5)


def test_a_grid_plugin_module_may_register_a_dataset(tmp_path, monkeypatch):
    module = "grid_dataset_module_xyz"
    (tmp_path / f"{module}.py").write_text(
        "from sepbench.datasets.base import register_dataset\n"
        f"from {__name__} import Tiny16\n\n"
        "register_dataset('gridset')(type('GridSet', (Tiny16,), {}))\n")
    monkeypatch.chdir(tmp_path)
    try:
        grid = parse_grid(grid_with(dataset="gridset", plugins=[module], methods=["average"],
                                    scenarios={"single": {"weights": [[1, 1]], "downsample": 4}}))
        assert (grid.dataset.name, grid.dataset.image_size, grid.dataset.train_size) == ("gridset", (16, 16), 300)
        assert dataset_origin("gridset") == f"module {module}"
        assert {c.task.observation_shape for c in plan_grid(grid).cells} == {(4, 4)}
    finally:
        base._DATASETS.pop("gridset", None)
        base._DATASET_ORIGINS.pop("gridset", None)
