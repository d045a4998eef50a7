"""Grid files: valid ones load, every kind of bad input is one clear error naming file and key."""

import pytest
import yaml

from sepbench.errors import GridError, UserError
from sepbench.grid import load_grid, packaged_grids, parse_grid
from sepbench.plan import plan_grid
from tests.conftest import TINY_GRID


def test_packaged_grids_load_and_plan():
    assert {"quick", "default"} <= set(packaged_grids())
    for name in ("quick", "quick.yaml", "default"):
        grid = load_grid(name)
        plan = plan_grid(grid)
        assert plan.cells
    default = load_grid("default")
    assert default.noise == (0.0, 0.01, 0.05, 0.1, 0.2) and default.seeds == (0, 1, 2)
    assert default.train.mixtures == 60000 and default.train.epochs == 100
    # the reference separators are in the default comparison: its top is the state of the art
    assert {"unet", "patchformer", "convsep", "ligt"} <= {e.method for e in default.methods}


def test_plan_skips_ica_on_single_with_reason_and_ids_are_stable():
    plan = plan_grid(parse_grid(TINY_GRID, "tiny.yaml"))
    skipped = {(s.label, s.scenario): s.reason for s in plan.skipped}
    assert "needs at least 2 observations" in skipped[("ica", "single")]
    labels = [(c.label, c.scenario.name) for c in plan.cells]
    assert ("ica", "dual") in labels and ("ica", "single") not in labels
    # 3 methods × 2 scenarios × 2 σ × 1 seed, less ICA on single
    assert len(plan.cells) == 10
    again = plan_grid(parse_grid(TINY_GRID, "tiny.yaml"))
    assert [c.id for c in plan.cells] == [c.id for c in again.cells]
    assert len({c.id for c in plan.cells}) == len(plan.cells)


def test_non_learned_methods_run_one_seed_learned_all():
    plan = plan_grid(parse_grid({**TINY_GRID, "seeds": [0, 1]}, "g"))
    seeds = {c.label: set() for c in plan.cells}
    for c in plan.cells:
        seeds[c.label].add(c.seed)
    assert seeds["average"] == {0} and seeds["fcsae"] == {0, 1}


@pytest.mark.parametrize("change, message", [
    ({"colour": "red"}, "colour: unknown key"),
    ({"noise": [0.1, -0.1]}, "noise[1]: σ must be a finite number ≥ 0"),
    ({"noise": "loud"}, "noise: expected a non-empty list"),
    ({"seeds": [0, 1.5]}, "seeds[1]: expected int"),
    ({"seeds": ["a"]}, "seeds[0]: expected int"),
    ({"train": {"epochs": "ten"}}, "train.epochs: expected int"),
    ({"train": {"epochs": 0}}, "train.epochs: expected a positive integer"),
    ({"train": {"lr": -1e-3}}, "train.lr: expected a positive learning rate"),
    ({"train": {"batch_size": 0}}, "train.batch_size: expected a positive integer"),
    ({"train": {"optimizer": "sgd"}}, "train.optimizer: unknown key"),
    ({"methods": [{"method": "fcsae", "train": {"epochs": -2}}]}, "methods[0].train.epochs"),
    ({"scenarios": {"bad": {"weights": [[1, -1]]}}}, "scenarios.bad.weights[0]"),
    ({"scenarios": {"bad": {"weights": [[1, 1]], "downsample": 5}}}, "must divide the image size"),
    ({"methods": ["average", "average"]}, "label 'average' is used twice"),
])
def test_bad_grid_values_name_the_key(change, message):
    with pytest.raises(GridError, match=None) as info:
        parse_grid({**TINY_GRID, **change}, "g.yaml")
    assert str(info.value).startswith("g.yaml: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("methods, message", [
    (["nosuch"], "unknown method 'nosuch' (known: average, "),
    ([{"method": "fcsae", "params": {"loss": "bogus"}}], "parameter 'loss' must be one of fixed, pit"),
    ([{"method": "fcsae", "params": {"hidden": "wide"}}], "parameter 'hidden' must be int"),
    ([{"method": "fcsae", "params": {"widht": 3}}], "unknown parameter 'widht'"),
    ([{"method": "fcsae", "params": {"hidden": -3}}], "parameter 'hidden' must be > 0"),
])
def test_bad_methods_fail_at_planning(methods, message):
    with pytest.raises(UserError) as info:
        plan_grid(parse_grid({**TINY_GRID, "methods": methods}, "g.yaml"))
    assert message in str(info.value)


def test_method_serving_no_scenario_is_an_error():
    grid = {**TINY_GRID, "scenarios": {"single": {"weights": [[1, 1]]}}, "methods": ["ica"]}
    with pytest.raises(UserError, match="ica cannot serve any scenario"):
        plan_grid(parse_grid(grid, "g.yaml"))


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(GridError, match="no such grid file"):
        load_grid(str(tmp_path / "absent.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(GridError, match="not valid YAML"):
        load_grid(str(broken))
    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump(TINY_GRID))
    assert load_grid(str(ok)).name == "tiny"


def test_a_scenario_may_have_its_own_noise_levels_and_its_cells_keep_their_ids():
    """``sigma:`` in a scenario replaces the grid's ``noise`` list for it; a cell at a σ both lists share has the
    same id either way (the list is not part of the cell)."""
    base = plan_grid(parse_grid(TINY_GRID))
    scenarios = {**TINY_GRID["scenarios"], "dual": {**TINY_GRID["scenarios"]["dual"], "sigma": [0.1, 0.0]},
                 "clean": {"weights": [[1, 1, 1]], "downsample": 1, "sigma": 0}}
    grid = parse_grid({**TINY_GRID, "scenarios": scenarios})
    assert grid.sigmas_for(grid.scenarios[1]) == (0.1, 0.0) and grid.sigmas_for(grid.scenarios[2]) == (0.0,)
    assert grid.sigmas_for(grid.scenarios[0]) == (0.01, 0.1)
    assert parse_grid(grid.to_dict()).to_dict() == grid.to_dict()  # written back and read again: the same grid
    plan = plan_grid(grid)
    settings = {(c.scenario.name, c.sigma) for c in plan.cells}
    assert {s for s in settings if s[0] == "dual"} == {("dual", 0.1), ("dual", 0.0)}
    assert {s for s in settings if s[0] == "clean"} == {("clean", 0.0)}
    old = {(c.label, c.scenario.name, c.sigma, c.seed): c.id for c in base.cells}
    new = {(c.label, c.scenario.name, c.sigma, c.seed): c.id for c in plan.cells}
    shared = set(old) & set(new)
    assert shared and all(old[k] == new[k] for k in shared)
    assert ("average", "dual", 0.01, 0) in old and ("average", "dual", 0.01, 0) not in new
    for bad, message in ((-0.1, "scenarios.clean.sigma[0]: σ must be a finite number ≥ 0"),
                         ([], "scenarios.clean.sigma: expected a non-empty list"),
                         (20.0, "scenarios.clean.sigma[0]: σ above 10")):
        with pytest.raises(GridError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_grid({**TINY_GRID, "scenarios": {**scenarios, "clean": {**scenarios["clean"], "sigma": bad}}})


def test_a_folder_named_like_a_packaged_grid_does_not_hide_it(tmp_path, monkeypatch):
    """`bench run --grid datasets` from the repository root, where datasets/ is a folder: the packaged grid."""
    from sepbench.grid import resolve_grid_path

    (tmp_path / "datasets").mkdir()
    monkeypatch.chdir(tmp_path)
    path = resolve_grid_path("datasets")
    assert path.is_file() and path.name == "datasets.yaml" and path.parent.name == "grids"
    assert load_grid("datasets").name == "datasets"
