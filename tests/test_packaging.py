"""Installed, sepbench is one import package: the wheel holds only `sepbench`, and a package that ships the
generic top-level names `datasets`, `benchmark` and `methods` lives beside it in one environment.

Everything is built and installed from this checkout, offline: the wheel with ``pip wheel --no-deps
--no-build-isolation``, the environment with ``python -m venv`` (sepbench's heavy dependencies — torch, pandas,
Ray, … — are made visible through a ``.pth`` line naming this interpreter's site-packages, where the
sepbench under test is only an editable-install finder, which a ``.pth`` path does not activate).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".venv", "reports", "build", "dist", "__pycache__", ".pytest_cache", ".ruff_cache"}

CLASH = {  # a stranger's distribution with the generic names sepbench must not take
    "pyproject.toml": '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n',
    "setup.cfg": "[metadata]\nname = generic-names\nversion = 1.0\n\n[options]\n"
                 "packages = datasets, benchmark, methods\n",
    "datasets/__init__.py": "OWNER = 'generic-names'\n",
    "benchmark/__init__.py": "OWNER = 'generic-names'\n",
    "methods/__init__.py": "OWNER = 'generic-names'\n",
}


def _run(*command: str | Path, cwd: Path | None = None, env: dict | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in command], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, command))}\n{done.stdout}\n{done.stderr}"
    return done


def _wheel(source: Path, out: Path) -> Path:
    """``pip wheel --no-deps`` of a source tree, offline; the one wheel it wrote."""
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", out, source)
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def sepbench_wheel(tmp_path_factory) -> Path:
    """The wheel of this checkout, built from a copy (the build leaves nothing in the working tree)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    shutil.copytree(ROOT, source, ignore=lambda folder, names: [n for n in names if n in SKIP_DIRS
                                                                 or n.endswith(".egg-info")])
    return _wheel(source, tmp / "dist")


def test_the_wheel_installs_one_top_level_package(sepbench_wheel):
    names = zipfile.ZipFile(sepbench_wheel).namelist()
    top = {name.split("/")[0] for name in names}
    dist_info = [name for name in top if name.endswith(".dist-info")]
    assert top - set(dist_info) == {"sepbench"}, sorted(top)
    assert len(dist_info) == 1 and dist_info[0].startswith("sepbench-"), sorted(top)
    # the repository's folders are mapped into the namespace, data files included
    for expected in ("sepbench/api.py", "sepbench/methods/torch_method.py", "sepbench/datasets/task.py",
                     "sepbench/grids/quick.yaml", "sepbench/executors/local.py"):
        assert expected in names, expected
    # every module of the checkout ships: a sub-package left out of setup.cfg's list would import in an editable
    # install and fail in a wheel's
    mapping = {"benchmark": "sepbench", "methods": "sepbench/methods", "datasets": "sepbench/datasets"}
    for folder, package in mapping.items():
        for module in (ROOT / folder).rglob("*.py"):
            relative = module.relative_to(ROOT / folder)
            if not (set(relative.parts) & SKIP_DIRS):
                assert f"{package}/{relative.as_posix()}" in names, f"{folder}/{relative} is not in the wheel"
    entry_points = zipfile.ZipFile(sepbench_wheel).read(next(n for n in names if n.endswith("entry_points.txt")))
    assert b"bench = sepbench.cli:main" in entry_points


@pytest.mark.slow
def test_a_fresh_environment_holds_sepbench_and_generic_top_level_names(sepbench_wheel, tmp_path):
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    (site / "zz_sepbench_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    for relative, text in CLASH.items():
        (tmp_path / "clash" / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "clash" / relative).write_text(text)
    clash_wheel = _wheel(tmp_path / "clash", tmp_path / "clash-dist")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index",
         sepbench_wheel, clash_wheel)

    probe = ("import benchmark, datasets, methods, sepbench, sepbench.datasets, sepbench.methods\n"
             "from sepbench import Method, Task, TorchMethod, register_method\n"
             "from sepbench.registry import available_methods\n"
             "print(benchmark.OWNER, datasets.OWNER, methods.OWNER)\n"
             "print(sepbench.__file__)\n"
             "print(' '.join(sorted(available_methods())))\n")
    lines = _run(python, "-c", probe, cwd=tmp_path).stdout.splitlines()
    assert lines[0] == "generic-names generic-names generic-names"  # the stranger's packages are intact
    assert lines[1] == str(site / "sepbench" / "__init__.py")  # sepbench from the wheel, not this checkout
    assert {"average", "ica", "fcsae", "convsep", "ligt"} <= set(lines[2].split())

    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({
        "name": "fresh", "dataset": {"name": "mnist", "train_size": 1000, "test_size": 200},
        "scenarios": {"single": {"weights": [[1, 1]], "downsample": 2}}, "noise": [0.01], "seeds": [0],
        "train": {"mixtures": 64, "epochs": 1, "batch_size": 32}, "test": {"mixtures": 20},
        "methods": ["average", {"method": "fcsae", "params": {"hidden": 32}}],
    }))
    run = _run(venv / "bin" / "bench", "run", "--grid", grid, "--out", tmp_path / "out", "--executor", "local",
               cwd=tmp_path)
    cells = sorted((tmp_path / "out" / "cells").glob("*.parquet"))
    assert len(cells) == 2, run.stdout + run.stderr
