"""Plugins: a generated package installs with pip, is listed, runs in a grid and passes the contract;
a broken plugin breaks only itself, and every error about it names it.

Packages are pip-installed into a temporary ``--target`` folder put on PYTHONPATH (entry points are found
there like in site-packages), so the shared environment never sees them and nothing is left behind.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sepbench import api, registry
from sepbench.cell import run_cell
from sepbench.cli import main
from sepbench.contract import CHECKS
from sepbench.grid import parse_grid
from sepbench.plan import plan_grid
from sepbench.registry import PluginError, available_methods, get_method, method_origin
from tests.conftest import TINY_GRID, bench, bench_here

PLUGIN = "plugdemo"
SMALL_GRID = {**TINY_GRID, "scenarios": {"single": TINY_GRID["scenarios"]["single"]}, "noise": [0.01],
              "test": {"mixtures": 20}}

BROKEN_PACKAGE = {
    "pyproject.toml": '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n',
    "setup.cfg": """\
[metadata]
name = bench-broken-demo
version = 0.1.0

[options]
packages = find:

[options.packages.find]
include = bench_broken_demo*

[options.entry_points]
bench.methods =
    ghost = bench_broken_demo.missing:Ghost
    notamethod = bench_broken_demo.things:not_a_method
    average = bench_broken_demo.things:Impostor
""",
    "bench_broken_demo/__init__.py": "",
    "bench_broken_demo/things.py": """\
from sepbench.api import Method


def not_a_method():
    return None


class Impostor(Method):
    def separate(self, y):
        return y
""",
}


def _builds_offline() -> bool:
    """Whether the installed setuptools can build a wheel without fetching anything (≥ 70.1, or with wheel)."""
    if importlib.util.find_spec("setuptools") is None:
        return False
    version = tuple(int(p) for p in importlib.metadata.version("setuptools").split(".")[:2] if p.isdigit())
    return version >= (70, 1) or importlib.util.find_spec("wheel") is not None


def pip_install(target: Path, *packages: Path) -> None:
    """``pip install`` local package folders into ``target`` (isolated builds fetch setuptools if need be)."""
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
    if _builds_offline():
        command.append("--no-build-isolation")
    done = subprocess.run(command + [str(p) for p in packages], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A package made by `bench new-method` and a broken one, pip-installed; the env that sees them."""
    root = tmp_path_factory.mktemp("plugins")
    made = bench("new-method", PLUGIN, "--dir", str(root / PLUGIN), cwd=root)
    assert made.returncode == 0, made.stderr
    for relative, text in BROKEN_PACKAGE.items():
        (root / "broken" / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / "broken" / relative).write_text(text)
    site = root / "site"
    try:
        pip_install(site, root / PLUGIN, root / "broken")
        yield root, {"PYTHONPATH": str(site)}
    finally:  # the uninstall: nothing was installed outside this folder
        shutil.rmtree(site, ignore_errors=True)


def _one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_methods_lists_the_plugin_and_the_broken_ones(installed):
    root, env = installed
    listed = bench("methods", cwd=root, env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines() if line and not line.startswith(" ")}
    assert "bench-plugdemo 0.1.0" in rows[PLUGIN] and "gain: float = 1.0" in rows[PLUGIN]
    assert "built-in" in rows["average"] and "ica" in rows and "fcsae" in rows  # the rest still works
    broken = listed.stdout.split("broken plugins")[1]
    assert "ghost  (bench-broken-demo 0.1.0)" in broken and "ModuleNotFoundError" in broken
    assert "notamethod" in broken and "not a subclass of sepbench.api.Method" in broken
    assert "'average' is already taken by sepbench.methods.average.Average (built-in)" in broken


def test_generated_plugin_passes_the_contract_and_its_own_test(installed):
    root, env = installed
    checked = bench("check-method", PLUGIN, cwd=root, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"method contract: {PLUGIN} (bench-plugdemo 0.1.0)" in checked.stdout
    own = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider"], cwd=root / PLUGIN,
                         env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    assert own.returncode == 0, own.stdout + own.stderr
    assert f"{len(CHECKS) + 1} passed" in own.stdout  # one test per contract check, and the registration
    assert "meets_the_method_contract[Plugdemo-batch-independence] PASSED" in own.stdout
    # its test tools come with the package: pip install -e .[test]
    setup = configparser.ConfigParser()
    setup.read(root / PLUGIN / "setup.cfg")
    assert setup["options.extras_require"]["test"].split() == ["pytest>=8"]
    assert "pip install -e .[test]" in (root / PLUGIN / "README.md").read_text()


def test_grid_runs_builtin_entry_point_and_grid_plugin_side_by_side(installed):
    root, env = installed
    (root / "gridplug_module.py").write_text(
        "from sepbench.api import register_method\n"
        "from sepbench.methods.average import Average\n\n\n"
        "@register_method('gridplug')\n"
        "class GridPlug(Average):\n"
        "    pass\n")
    grid = root / "side_by_side.yaml"
    grid.write_text(yaml.safe_dump({**SMALL_GRID, "methods": ["average", PLUGIN, "gridplug"],
                                    "plugins": ["gridplug_module"]}, sort_keys=False))
    out = root / "runs" / "side"
    run = bench("run", "--grid", str(grid), "--out", str(out), "--executor", "local", cwd=root, env=env)
    assert run.returncode == 0, run.stderr
    metas = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    origins = {m["config"]["method"]: m["origin"] for m in metas}
    assert origins == {"average": "built-in", PLUGIN: "bench-plugdemo 0.1.0", "gridplug": "module gridplug_module"}
    assert all(m["status"] == "done" for m in metas)
    mse = pd.concat(pd.read_parquet(p) for p in (out / "cells").glob("*.parquet")).groupby("method")["mse"].mean()
    # as generated, the plugin is the even split, i.e. the average baseline: the same scores
    assert mse[PLUGIN] == pytest.approx(mse["average"], rel=1e-6)


def test_grid_using_a_broken_entry_point_exits_2_naming_it(installed):
    root, env = installed
    method, cause = "ghost", "ModuleNotFoundError: No module named 'bench_broken_demo.missing'"
    grid = root / f"uses_{method}.yaml"
    grid.write_text(yaml.safe_dump({**SMALL_GRID, "methods": ["average", method]}, sort_keys=False))
    result = bench("run", "--grid", str(grid), "--out", str(root / method), "--executor", "local", cwd=root, env=env)
    _one_line_error(result, f"method {method!r} comes from a broken plugin", "bench-broken-demo 0.1.0", cause)
    assert not (root / method).exists()


# ---- in-process: entry points faked, grid plugin modules from a temporary folder ----------------------

class GoodPlugin(api.Method):
    def separate(self, y):
        return y


class OtherPlugin(GoodPlugin):
    pass


NOT_A_METHOD = "just a string"


def fake_entry_points(monkeypatch, *specs: tuple[str, str]) -> None:
    entries = [importlib.metadata.EntryPoint(name, value, registry.ENTRY_POINT_GROUP) for name, value in specs]
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [e for e in entries if e.group == group])


def test_entry_point_failures_break_only_themselves(monkeypatch, clean_registry):
    here = __name__
    fake_entry_points(monkeypatch, ("good", f"{here}:GoodPlugin"), ("missing", "no_such_module_xyz:Thing"),
                      ("stringy", f"{here}:NOT_A_METHOD"), ("ica", f"{here}:OtherPlugin"),
                      ("twice", f"{here}:GoodPlugin"), ("twice", f"{here}:OtherPlugin"))
    methods = available_methods()
    assert methods["good"] is GoodPlugin and method_origin("good") == "entry point"
    assert methods["ica"].__module__ == "sepbench.methods.ica" and method_origin("ica") == "built-in"
    assert methods["twice"] is GoodPlugin  # the first claim wins; the second is reported
    assert {"average", "ica", "fcsae"} <= set(methods) and "missing" not in methods and "stringy" not in methods
    errors = {b.name: b.error for b in registry.broken_plugins()}
    assert errors["missing"] == "cannot be imported: ModuleNotFoundError: No module named 'no_such_module_xyz'"
    assert "is str 'just a string', not a subclass" in errors["stringy"]
    assert "already taken by sepbench.methods.ica.ICA (built-in)" in errors["ica"]
    assert f"already taken by {here}.GoodPlugin (entry point)" in errors["twice"]
    with pytest.raises(PluginError, match=r"method 'missing' comes from a broken plugin: entry point "
                                          r"'missing = no_such_module_xyz:Thing'"):
        get_method("missing")


def test_methods_command_shows_broken_plugins(monkeypatch, capsys, clean_registry):
    fake_entry_points(monkeypatch, ("missing", "no_such_module_xyz:Thing"))
    monkeypatch.setattr(sys, "argv", ["bench", "methods", "-v"])
    main()
    out = capsys.readouterr().out
    assert out.startswith("NAME") and "FastICA iterations per mixture" in out  # -v: parameter help
    assert "broken plugins" in out and "missing  (entry point)" in out and "No module named" in out


def _write_module(folder: Path, name: str, body: str) -> str:
    (folder / f"{name}.py").write_text("from sepbench.api import Method, register_method\n\n\n" + body)
    return name


def _grid(plugins: list[str], methods: list) -> dict:
    return parse_grid({**SMALL_GRID, "methods": methods, "plugins": plugins}, "g.yaml")


@pytest.fixture
def plugin_folder(tmp_path, monkeypatch, clean_registry):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("gp_")]:
        del sys.modules[name]


def test_grid_plugin_is_imported_in_the_driver_and_in_the_cell(plugin_folder):
    module = _write_module(plugin_folder, "gp_halves", "@register_method('halves')\n"
                                                       "class Halves(Method):\n"
                                                       "    def separate(self, y):\n"
                                                       "        import torch.nn.functional as F\n"
                                                       "        up = F.interpolate(y.sum(1, keepdim=True), "
                                                       "scale_factor=2) / 2\n"
                                                       "        return up.expand(-1, 2, -1, -1).contiguous()\n")
    cell = plan_grid(_grid([module], ["average", "halves"])).cells[1]
    assert cell.plugins == (module,) and method_origin("halves") == "module gp_halves"
    assert "plugins" not in cell.config() and cell.id == replace(cell, plugins=()).id  # not part of the id
    # a fresh worker process: the method is not registered and the module not imported yet
    del api._REGISTRY["halves"], sys.modules[module]
    result = run_cell(cell)
    assert result.status == "done", result.meta.get("error")
    assert result.meta["origin"] == "module gp_halves" and len(result.rows) == 2 * 20


@pytest.mark.parametrize("body, cause", [
    ("raise ImportError('needs a GPU library')\n", "ImportError: needs a GPU library"),
    ("@register_method('average')\nclass Average(Method):\n    pass\n", "ValueError: method name 'average' is "
                                                                        "already taken by sepbench.methods.average"),
    ("register_method('thing')(object)\n", "TypeError: @register_method('thing') needs a Method subclass"),
    ("def broken(:\n", "SyntaxError"),
])
def test_broken_grid_plugin_names_itself_and_spares_other_grids(plugin_folder, body, cause):
    module = _write_module(plugin_folder, "gp_broken", body)
    with pytest.raises(PluginError) as error:
        plan_grid(_grid([module], ["average"]))
    assert str(error.value).startswith("g.yaml: plugins: plugin 'gp_broken' cannot be imported: ")
    assert cause in str(error.value)
    assert len(plan_grid(_grid([], ["average"])).cells) == 1  # a grid without it still runs


def test_missing_grid_plugin_via_the_command_line(tmp_path, write_grid):
    result = bench_here("run", "--grid", str(write_grid({"plugins": ["no_such_plugin_module"]})), "--out",
                        str(tmp_path / "o"), "--executor", "local", cwd=tmp_path)
    _one_line_error(result, "plugins: plugin 'no_such_plugin_module' cannot be imported: ModuleNotFoundError")


# ---- bench new-method: what it refuses ------------------------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["Bad Name"], "invalid method name 'Bad Name'"),
    (["9lives"], "invalid method name"),
    (["ica"], "method name 'ica' is already taken (built-in)"),
])
def test_new_method_refuses_bad_names(tmp_path, monkeypatch, capsys, args, fragment):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["bench", "new-method", *args])
    with pytest.raises(SystemExit) as status:
        main()
    err = capsys.readouterr().err
    assert status.value.code == 2 and fragment in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_new_method_refuses_a_non_empty_directory(tmp_path, monkeypatch, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    monkeypatch.setattr(sys, "argv", ["bench", "new-method", "fresh", "--dir", str(tmp_path / "taken")])
    with pytest.raises(SystemExit) as status:
        main()
    assert status.value.code == 2 and "is not empty" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]


def test_methods_command_takes_several_patterns(monkeypatch, capsys, clean_registry):
    monkeypatch.setattr(sys, "argv", ["bench", "methods", "-v", "a*", "unet", "ica"])
    main()
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()
             if line and not line.startswith(" ")]
    assert names == ["NAME", "average", "ica", "unet"]
    monkeypatch.setattr(sys, "argv", ["bench", "methods", "unet", "zz*"])
    with pytest.raises(SystemExit) as status:
        main()
    err = capsys.readouterr().err
    assert status.value.code == 2 and "no method matches 'zz*'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["w", "wiener", "a-rather-long-method-name-for-alignment"])
def test_new_method_readme_aligns_its_comments_for_any_name(tmp_path, name):
    from sepbench.scaffold import new_method

    new_method(name, tmp_path / "pkg")
    block = [line for line in (tmp_path / "pkg" / "README.md").read_text().splitlines() if line.startswith("    ")]
    columns = {line.index("  # ") for line in block if "  # " in line}
    assert len(columns) == 1, block  # one column for every comment
    longest = max(len(line.partition("  # ")[0]) for line in block if "  # " in line)
    assert columns == {longest} and f"    bench check-method {name}" in block[2]
