"""Hostile and absurd grid files through the real command line: one line on stderr, exit 2, fast, in bounded
memory (under a timeout and an address-space limit), nothing written. All the grids go through ``bench run``
(``sepbench.cli.main``, as the console script calls it) one after another in one bounded process: importing torch
once, not once per grid."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY_GRID

MEMORY_LIMIT = 6 * 2**30  # address space of the `bench` process: torch's import alone maps ~2 GiB
TIME_LIMIT = 300  # seconds for all the grids, generous for a loaded machine; each answers in well under a second


def bomb(levels: int = 9) -> str:
    """A YAML "billion laughs" as one flow value: 9**levels strings once aliases are expanded."""
    parts = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        parts.append(f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "[" + ", ".join(parts) + "]"


def grid_text(**changes: object) -> str:
    return yaml.safe_dump({**TINY_GRID, "methods": ["average"], **changes}, sort_keys=False)


def with_line(text: str, key: str, value: str) -> str:
    """``text`` with the top-level ``key`` replaced by a raw YAML ``value``."""
    out = []
    skip = False
    for line in text.splitlines():
        if line.startswith(f"{key}:"):
            skip = True
            continue
        if skip and line.startswith((" ", "-")):
            continue
        skip = False
        out.append(line)
    return "\n".join(out) + f"\n{key}: {value}\n"


# a grid written by hand, so that the lines of its keys are known
HEAD = """name: tiny
dataset: {name: mnist, train_size: 2000, test_size: 500}
scenarios:
  single: {weights: [[1, 1]], downsample: 2}
  dual: {weights: [[0.7, 0.3], [0.3, 0.7]], downsample: 2}
noise: [0.01]
seeds: [0]
test: {mixtures: 40}
"""  # 8 lines

DUPLICATE_KEYS = {
    "noise twice": (HEAD + "methods: [average]\nnoise: [0.5]\n", "duplicate key 'noise' (lines 6 and 10)"),
    "scenario twice": (HEAD.replace("  dual:", "  single:") + "methods: [average]\n",
                       "duplicate key 'single' (lines 4 and 5)"),
    "a method entry's key twice": (HEAD + "methods:\n  - method: average\n    label: mean\n    train: {epochs: 1}\n"
                                   "    label: other\n", "duplicate key 'label' (lines 11 and 13)"),
    "a key twice in a flow mapping": (HEAD.replace("downsample: 2}", "downsample: 2, downsample: 4}", 1)
                                      + "methods: [average]\n", "duplicate key 'downsample' (twice on line 4)"),
}

HOSTILE = {
    **DUPLICATE_KEYS,
    "alias bomb in the name": (with_line(grid_text(), "name", bomb()), "more than 100000 values"),
    "alias bomb in a label": (with_line(grid_text(), "methods", "[{method: average, label: " + bomb() + "}]"),
                              "more than 100000 values"),
    "alias bomb in a plugin": (with_line(grid_text(), "plugins", "[" + bomb() + "]"), "more than 100000 values"),
    "alias bomb in a parameter": (with_line(grid_text(), "methods", "[{method: average, params: {x: " + bomb()
                                            + "}}]"), "more than 100000 values"),
    "5 MB noise list": (with_line(grid_text(), "noise", "[" + ", ".join(["0.01"] * 900_000) + "]"),
                        "larger than 256 KiB"),
    "run name with NUL": (with_line(grid_text(), "name", '"tiny\\0run"'), "name: contains a control character"),
    "run name of 300 characters": (grid_text(name="r" * 300), "name: longer than 100 characters (300)"),
    "run name with U+0085 (next line)": (grid_text(name="tiny\x85run"), "name: contains a control character (U+0085)"),
    "method name with U+009B (CSI)": (grid_text(methods=["average\x9b"]),
                                      "methods[0]: contains a control character (U+009B)"),
    "label with U+202E (right-to-left override)": (
        grid_text(methods=[{"method": "average", "label": "mean\u202eesrever"}]),
        "methods[0].label: contains a control character (U+202E, a bidirectional text control)"),
    "scenario name with U+2066 (left-to-right isolate)": (
        grid_text(scenarios={"a\u2066b": {"weights": [[1, 1]]}}),
        "scenarios: contains a control character (U+2066, a bidirectional text control)"),
    "seed 2**64": (grid_text(seeds=[2**64]), "seeds[0]: expected 0 ≤ seed ≤ 2**32 - 1"),
    "all-zero weights": (grid_text(scenarios={"blind": {"weights": [[0, 0]]}}), "row 0 is all zero"),
    "zero row of weights": (grid_text(scenarios={"half": {"weights": [[1, 1], [0, 0]]}}), "row 1 is all zero"),
    "unseen source": (grid_text(scenarios={"one": {"weights": [[1, 0], [1, 0]]}}), "column 1 is all zero"),
    "σ = 1e300": (grid_text(noise=[1e300]), "noise[0]: σ above 10"),
    "10^9 test mixtures": (grid_text(test={"mixtures": 10**9}), "test.mixtures: at most 200000"),
    "10^12 training mixtures": (grid_text(train={"mixtures": 10**12}), "train.mixtures: at most 10000000"),
    "100 000 cells": (grid_text(seeds=list(range(1000)), noise=[i / 1000 for i in range(100)],
                                methods=["average", "fcsae"]), "cells (methods × scenarios × σ × seeds)"),
}


def limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


# `bench run --grid <grid> --executor local --out <folder>/run` in <folder>, for each (case, folder) read from stdin;
# prints each case's exit status and stderr (an uncaught error: its traceback and 1, as the interpreter would)
BOUNDED_RUNS = """
import contextlib, io, json, os, sys, traceback
from sepbench.cli import main

found = {}
for case, folder in json.load(sys.stdin):
    os.chdir(folder)
    sys.argv = ["bench", "run", "--grid", os.path.join(folder, "grid.yaml"), "--executor", "local", "--out",
                os.path.join(folder, "run")]
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception:
            traceback.print_exc()
            code = 1
    found[case] = {"returncode": code, "stderr": err.getvalue()}
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def hostile_runs(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """Each case's folder (its grid.yaml) and what ``bench run`` did with it, all in one bounded process."""
    folders = {}
    for i, (case, (text, _)) in enumerate(HOSTILE.items()):
        folders[case] = tmp_path_factory.mktemp(f"hostile{i}")
        (folders[case] / "grid.yaml").write_text(text)
    done = subprocess.run([sys.executable, "-c", BOUNDED_RUNS], input=json.dumps([[c, str(f)] for c, f in
                                                                                   folders.items()]),
                          capture_output=True, text=True, timeout=TIME_LIMIT, preexec_fn=limit_memory)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return {case: (folders[case], found[case]) for case in HOSTILE}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_grid_is_one_line_and_exit_2(hostile_runs, case: str) -> None:
    _, expected = HOSTILE[case]
    folder, result = hostile_runs[case]
    lines = result["stderr"].strip().splitlines()
    assert result["returncode"] == 2, result["stderr"][-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result["stderr"]
    assert expected in lines[0]
    assert len(lines[0]) < 300 + len(str(folder / "grid.yaml"))  # values are quoted short
    assert not (folder / "run").exists()


def test_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    """A mapping's own key overrides a merged one (``<<: *base``): YAML's meaning, kept; only keys written twice
    in one mapping are refused."""
    from sepbench.grid import load_grid

    grid = tmp_path / "grid.yaml"
    grid.write_text(HEAD + "train: &budget {mixtures: 128, epochs: 1, batch_size: 64}\n"
                    "methods:\n  - {method: fcsae, label: a, train: {<<: *budget, epochs: 3}}\n"
                    "  - {method: fcsae, label: b, train: *budget}\n")
    loaded = load_grid(str(grid))
    assert [loaded.budget_for(e).epochs for e in loaded.methods] == [3, 1]
    assert {loaded.budget_for(e).mixtures for e in loaded.methods} == {128}


def test_emoji_names_pass_and_bidi_controls_do_not() -> None:
    """Emoji sequences join their parts with U+200D (zero-width joiner): a name may hold them."""
    from sepbench.bounds import name_problem
    from sepbench.grid import parse_grid

    scientist = "\U0001f469\u200d\U0001f52c"  # 👩‍🔬
    grid = parse_grid({**TINY_GRID, "scenarios": {f"{scientist} lab": {"weights": [[1, 1]]}},
                       "methods": [{"method": "average", "label": scientist}]})
    assert grid.methods[0].label == scientist and grid.scenarios[0].name == f"{scientist} lab"
    for control in ["\x00", "\n", "\x7f", "\x85", "\x9b", "\x9f", "\u061c", "\u200e", "\u200f", "\u202a",
                    "\u202e", "\u2066", "\u2069"]:
        assert name_problem(f"a{control}b") == (f"contains a control character (U+{ord(control):04X}"
                                                + (")" if ord(control) < 0xA0 else ", a bidirectional text control)"))


def test_a_real_grid_passes_the_bounds(tmp_path: Path) -> None:
    """The bounds are far from real grids: every packaged grid, and the largest legal seed, pass them."""
    from sepbench.grid import load_grid, packaged_grids, parse_grid

    for name in packaged_grids():
        load_grid(name)
    grid = parse_grid({**TINY_GRID, "seeds": [0, 2**32 - 1], "noise": [0.0, 10.0],
                       "scenarios": {"k": {"weights": [[1, 0], [0, 1]]}}})
    assert grid.seeds == (0, 2**32 - 1)
