"""A method's own parameter checks (``Method.check_params``) run when the grid is validated, before any cell."""

from __future__ import annotations

import sys

import pytest

from sepbench import ParameterError, Task
from sepbench.errors import UserError
from sepbench.grid import parse_grid
from sepbench.plan import plan_grid
from sepbench.registry import get_method
from tests.conftest import TINY_GRID, bench

BOUNDED = '''\
from sepbench import Method, Param, ParameterError, register_method


@register_method("bounded")
class Bounded(Method):
    """Clips estimates to [low, high]: low must not exceed high, and neither may be negative."""

    parameters = {"low": Param(0.0, float), "high": Param(1.0, float)}

    @classmethod
    def check_params(cls, params, task):
        if params["low"] < 0:
            raise ParameterError(f"method {cls.name!r}: parameter 'low' must be >= 0, got {params['low']}")
        if params["low"] > params["high"]:
            raise ParameterError(f"method {cls.name!r}: 'low' ({params['low']}) must not exceed 'high' "
                                 f"({params['high']})")
        if task.sigma > 0.05 and params["high"] < 1:
            raise ParameterError(f"method {cls.name!r}: 'high' < 1 needs σ <= 0.05, scenario has {task.sigma}")

    def separate(self, y):
        from sepbench import upsample

        out = upsample(y.sum(1, keepdim=True), self.task.downsample) / 2
        return out.clamp(self.params["low"], self.params["high"]).expand(-1, 2, -1, -1).contiguous()
'''


@pytest.fixture
def bounded_plugin(tmp_path, monkeypatch, clean_registry):
    (tmp_path / "gp_bounded.py").write_text(BOUNDED)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("gp_bounded", None)


def _grid(methods: list, noise: list[float] | None = None) -> dict:
    return {**TINY_GRID, "methods": methods, "plugins": ["gp_bounded"], "noise": noise or [0.01]}


def test_the_plugins_check_runs_at_planning_for_every_entry_and_scenario(bounded_plugin):
    plan = plan_grid(parse_grid(_grid(["average", {"method": "bounded", "params": {"low": 0.1, "high": 0.9}}]),
                                "g.yaml"))
    assert [c.label for c in plan.cells].count("bounded") == 2  # single and dual
    with pytest.raises(UserError, match=r"^g.yaml: methods: bounded: scenario single \(σ=0.01\): method "
                                        r"'bounded': 'low' \(0.8\) must not exceed 'high' \(0.2\)$"):
        plan_grid(parse_grid(_grid([{"method": "bounded", "params": {"low": 0.8, "high": 0.2}}]), "g.yaml"))
    # a check that depends on the task: only the σ = 0.1 cells break it
    with pytest.raises(UserError, match=r"scenario single \(σ=0.1\): .*'high' < 1 needs σ <= 0.05"):
        plan_grid(parse_grid(_grid([{"method": "bounded", "params": {"high": 0.9}}], noise=[0.01, 0.1]), "g.yaml"))


def test_init_runs_the_same_check(bounded_plugin):
    plan_grid(parse_grid(_grid(["bounded"]), "g.yaml"))  # imports the plugin
    with pytest.raises(ParameterError, match="'low' must be >= 0"):
        get_method("bounded")(Task(((1.0, 1.0),), 2, 0.01), low=-0.1)


@pytest.mark.parametrize("method, params, fragment", [
    ("ligt", {"heads": 7}, "heads=7 must divide the model width 288"),
    ("ligt", {"dropout": 1.0}, "parameter 'dropout' must be in [0, 1)"),
    ("ligt-spatial", {"channels": 1}, "parameter 'channels' must be >= 2"),
    ("convsep-res", {"width": 1}, "parameter 'width' must be >= 2"),
    ("unet", {"width": 1}, "parameter 'width' must be >= 2"),
    ("unet", {"weight_decay": -1.0}, "parameter 'weight_decay' must be >= 0"),
    ("patchformer", {"heads": 5}, "heads=5 must divide width=192"),
    ("patchformer", {"dropout": 1.0}, "parameter 'dropout' must be in [0, 1)"),
    ("patchformer", {"weight_decay": -1.0}, "parameter 'weight_decay' must be >= 0"),
])
def test_builtin_constraints_are_refused_at_planning(method, params, fragment):
    with pytest.raises(UserError) as error:
        plan_grid(parse_grid({**TINY_GRID, "methods": ["average", {"method": method, "params": params}]}, "g.yaml"))
    assert fragment in str(error.value) and str(error.value).startswith(f"g.yaml: methods: {method}: scenario ")


def test_a_grid_that_breaks_the_plugins_check_exits_2_before_any_cell_runs(bounded_plugin, write_grid):
    """Through the real command line: `average` comes first and would run, but nothing does."""
    grid = write_grid(_grid(["average", {"method": "bounded", "label": "b", "params": {"low": -1.0}}]))
    out = bounded_plugin / "out"
    result = bench("run", "--grid", str(grid), "--out", str(out), "--executor", "local", cwd=bounded_plugin,
                   env={"PYTHONPATH": str(bounded_plugin)})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: {grid}: methods: b: scenario single (σ=0.01): method 'bounded': parameter 'low' "
                     "must be >= 0, got -1.0"], result.stderr
    assert not out.exists()  # no run directory, no cell
