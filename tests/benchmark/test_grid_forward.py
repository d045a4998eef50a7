"""The forward model as scenario data: noise and blur keys, numbers of sources, and what the plan makes of them."""

from __future__ import annotations

import pytest

from sepbench.api import SERVED_SOURCES, Method, Requirements, Task, register_method
from sepbench.errors import GridError, UserError
from sepbench.grid import load_grid, parse_grid
from sepbench.plan import plan_grid
from tests.conftest import TINY_GRID

#: the quick grid's cell ids as main planned them before noise models, blur and source counts were scenario data
QUICK_IDS_BEFORE = {
    "average/single/0.01/0": "fece7e2a8e43", "average/single/0.1/0": "76d674d4f168",
    "average/dual/0.01/0": "01a48a579979", "average/dual/0.1/0": "8689f65854fc",
    "ica/dual/0.01/0": "b7d0595553dd", "ica/dual/0.1/0": "0bb6963faa52",
    "fcsae-pit/single/0.01/0": "17149745f02b", "fcsae-pit/single/0.1/0": "b32dd9b9ee87",
    "fcsae-pit/dual/0.01/0": "ccb1550ef11e", "fcsae-pit/dual/0.1/0": "7f3d908559c9",
    "convsep-pit/single/0.01/0": "2f524bcb07f0", "convsep-pit/single/0.1/0": "7958f4641415",
    "convsep-pit/dual/0.01/0": "7fa76e025905", "convsep-pit/dual/0.1/0": "d5c4c47af3cf",
    "convsep-res-pit/single/0.01/0": "18e1c4d20a73", "convsep-res-pit/single/0.1/0": "6f676b1e4547",
    "convsep-res-pit/dual/0.01/0": "5b8ee4961aff", "convsep-res-pit/dual/0.1/0": "6aee81adcf5f",
    "ligt-pit/single/0.01/0": "aa03c0075087", "ligt-pit/single/0.1/0": "0933eddee9d3",
    "ligt-pit/dual/0.01/0": "34cd4d5ac957", "ligt-pit/dual/0.1/0": "0f7e49a711d7",
    "ligt-batchseq/single/0.01/0": "6a2363f26594", "ligt-batchseq/single/0.1/0": "af910ed0b6a3",
    "ligt-batchseq/dual/0.01/0": "a69e17de0f04", "ligt-batchseq/dual/0.1/0": "381b26f6922d",
    "ligt-spatial-pit/single/0.01/0": "c7ec5be84149", "ligt-spatial-pit/single/0.1/0": "a9d7ec65b2a4",
    "ligt-spatial-pit/dual/0.01/0": "36b5595e6432", "ligt-spatial-pit/dual/0.1/0": "fff9ff3c74f2",
    "unet/single/0.01/0": "6c421986b47a", "unet/single/0.1/0": "370687183d13",
    "unet/dual/0.01/0": "b101ebafb3ac", "unet/dual/0.1/0": "f82d263878c3",
    "patchformer/single/0.01/0": "8852cb6bd72a", "patchformer/single/0.1/0": "1c1f4a867127",
    "patchformer/dual/0.01/0": "1775bbe961ae", "patchformer/dual/0.1/0": "e3f5b20acbc7",
}


def test_quick_grid_cell_ids_are_unchanged():
    plan = plan_grid(load_grid("quick"))
    ids = {f"{c.label}/{c.scenario.name}/{c.sigma:g}/{c.seed}": c.id for c in plan.cells}
    assert ids == QUICK_IDS_BEFORE


def _grid(scenarios: dict, methods: list | None = None) -> dict:
    return {**TINY_GRID, "scenarios": scenarios, "methods": methods or ["average", "lsq"]}


def test_noise_and_blur_keys_reach_the_task_and_the_cell_config():
    grid = parse_grid(_grid({
        "faint": {"weights": [[1, 1, 1]], "noise": {"model": "poisson-gaussian", "photons": 100}},
        "soft": {"weights": [[1, 1]], "downsample": 1, "blur": {"psf": "gaussian", "width": 1.5}},
        "sd": {"weights": [[1, 1]], "downsample": 1, "noise": "gaussian", "blur": {"psf": "random", "size": 5}},
    }), "g.yaml")
    plan = plan_grid(grid)
    tasks = {c.scenario.name: c.task for c in plan.cells}
    assert (tasks["faint"].noise_model, tasks["faint"].photons, tasks["faint"].n_sources) == ("poisson-gaussian",
                                                                                               100.0, 3)
    assert (tasks["soft"].blur, tasks["soft"].blur_width) == ("gaussian", 1.5)
    assert (tasks["sd"].blur, tasks["sd"].blur_size, tasks["sd"].noise_model) == ("random", 5, "gaussian")
    configs = {c.scenario.name: c.config()["scenario"] for c in plan.cells}
    assert configs["faint"]["noise"] == {"model": "poisson-gaussian", "photons": 100.0}
    assert configs["soft"]["blur"] == {"psf": "gaussian", "width": 1.5} and "noise" not in configs["soft"]
    assert configs["sd"] == {"name": "sd", "weights": [[1.0, 1.0]], "downsample": 1,
                             "blur": {"psf": "random", "size": 5}}  # `noise: gaussian` is the default: left out
    # the written grid reads back to the same scenarios (the run directory's grid.yaml)
    again = parse_grid({**grid.to_dict(), "methods": ["average", "lsq"]}, "again.yaml")
    assert again.scenarios == grid.scenarios


@pytest.mark.parametrize("spec, message", [
    ({"noise": {"model": "poisson-gaussian", "photons": -5}}, "noise.photons: expected a photon count"),
    ({"noise": {"model": "poisson-gaussian", "photons": 0}}, "noise.photons: expected a photon count"),
    ({"noise": {"model": "poisson-gaussian"}}, "poisson-gaussian needs 'photons'"),
    ({"noise": {"model": "gaussian", "photons": 10}}, "only the poisson-gaussian model counts photons"),
    ({"noise": "laplace"}, "noise.model: expected one of gaussian, poisson-gaussian"),
    ({"noise": {"model": "poisson-gaussian", "photons": 10, "gain": 2}}, "noise.gain: unknown key"),
    ({"blur": {"psf": "gaussian", "width": -1}}, "blur.width: expected a width > 0"),
    ({"blur": {"psf": "gaussian"}}, "a gaussian psf takes 'width'"),
    ({"blur": {"psf": "random", "size": 4}}, "blur.size: expected an odd kernel side"),
    ({"blur": {"psf": "random", "width": 2}}, "a random psf takes 'size'"),
    ({"blur": {"psf": "motion", "size": 3}}, "blur.psf: expected one of gaussian, random"),
    ({"blur": "gaussian"}, "blur: expected a mapping"),
])
def test_bad_noise_and_blur_name_the_key(spec, message):
    with pytest.raises(GridError) as info:
        parse_grid(_grid({"s": {"weights": [[1, 1]], **spec}}), "g.yaml")
    assert str(info.value).startswith("g.yaml: scenarios.s.") and message in str(info.value)
    assert "\n" not in str(info.value)


def test_requirements_declare_numbers_of_sources():
    assert Requirements().serves_sources(2) and not Requirements().serves_sources(3)  # the default: exactly 2
    served = Requirements(n_sources=SERVED_SOURCES)
    assert [served.serves_sources(s) for s in (1, 2, 3, 4, 5)] == [False, True, True, True, False]
    assert served.sources_text() == "2–4" and Requirements(n_sources=None).sources_text() == "any"
    assert Requirements(n_sources=(2, 5)).sources_text() == "2, 5" and Requirements().sources_text() == "2"
    for bad in (0, (), (2, 0), "2", 2.5, True):
        with pytest.raises(ValueError, match="n_sources"):
            Requirements(n_sources=bad)


def test_built_ins_serve_two_to_four_sources_and_the_papers_networks_two():
    from sepbench.registry import get_method

    for name in ("average", "fcsae", "unet", "patchformer"):
        assert get_method(name).requires.n_sources == SERVED_SOURCES, name
    for name in ("convsep", "convsep-res", "ligt", "ligt-spatial", "ligt-batchseq", "ica"):
        assert get_method(name).requires.n_sources == 2, name
    assert get_method("lsq").requires.n_sources is None


def test_plan_skips_methods_that_do_not_serve_a_scenarios_sources():
    plan = plan_grid(parse_grid(_grid({
        "one": {"weights": [[1]]}, "two": {"weights": [[1, 1]]}, "three": {"weights": [[1, 1, 1]]},
        "five": {"weights": [[1, 1, 1, 1, 1]]},
    }, ["average", "lsq", {"method": "convsep", "params": {"loss": "pit"}}]), "g.yaml"))
    served = {(c.label, c.scenario.name) for c in plan.cells}
    assert {("lsq", "one"), ("lsq", "three"), ("lsq", "five"), ("average", "three")} <= served
    skipped = {(s.label, s.scenario): s.reason for s in plan.skipped}
    assert skipped[("average", "one")] == "separates 2–4 sources, scenario has 1"
    assert skipped[("average", "five")] == "separates 2–4 sources, scenario has 5"
    assert skipped[("convsep", "three")] == "separates 2 sources, scenario has 3"
    assert ("convsep", "two") in served


def test_a_scenario_no_method_serves_is_an_error_before_any_work():
    grid = parse_grid(_grid({"two": {"weights": [[1, 1]]}, "five": {"weights": [[1, 1, 1, 1, 1]]}},
                            ["average", {"method": "fcsae", "params": {"hidden": 8}}]), "g.yaml")
    with pytest.raises(UserError) as info:
        plan_grid(grid)
    assert str(info.value) == ("g.yaml: scenarios.five: 5 source(s), which no method of the grid separates "
                               "(sources served: average: 2–4; fcsae: 2–4)")


def test_a_method_serving_none_of_the_scenarios_sources_is_an_error(clean_registry):
    @register_method("pairs-only")
    class PairsOnly(Method):
        def separate(self, y):
            return y

    grid = parse_grid(_grid({"three": {"weights": [[1, 1, 1]]}}, ["average", "pairs-only"]), "g.yaml")
    with pytest.raises(UserError, match=r"pairs-only cannot serve any scenario of the grid \(three: separates 2 "
                                        r"sources, scenario has 3\)"):
        plan_grid(grid)
    assert Task(((1.0, 1.0, 1.0),), 2, 0.0).n_sources == 3


def test_too_many_sources_is_a_grid_error():
    with pytest.raises(GridError, match="at most 16 observations × 8 sources, got 1 × 9"):
        parse_grid(_grid({"nine": {"weights": [[1] * 9]}}), "g.yaml")
