"""Bounds on a grid that no real grid reaches: hostile or absurd files end in one line, fast, in bounded memory.

Checked in three places: the file before parsing (size), the parsed document before validation (nodes after
YAML alias expansion, nesting depth), and the validated grid (names, seeds, σ, weights, sizes, memory).
The README's "What a run directory guarantees" lists them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

MAX_FILE_BYTES = 256 * 1024  # a rich grid is a few kB
MAX_NODES = 100_000  # values after alias expansion (the quick grid has ~60)
MAX_DEPTH = 32
MAX_NAME = 100  # run name, labels, scenario and method names
MAX_PLUGIN = 200
MAX_LIST = {"noise": 100, "seeds": 1000, "methods": 200, "scenarios": 100, "plugins": 50}
MAX_CELLS = 20_000
MAX_SEED = 2**32 - 1
MAX_SIGMA = 10.0  # on the [0, 1] pixel scale: σ = 10 is already noise 10× the brightest pixel
MAX_WEIGHT = 1000.0
MAX_SOURCES, MAX_OBSERVATIONS = 8, 16
MAX_TRAIN_MIXTURES, MAX_EPOCHS, MAX_BATCH = 10_000_000, 100_000, 65_536
MAX_TEST_MIXTURES = 200_000
MEMORY_SHARE = 0.5  # a cell's test set may take at most this share of the machine's memory
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc: C0, DEL and C1 (U+0085 ends a line)
# bidirectional controls reorder how the text around them is shown (a label that reads as another); the
# joiner U+200D that emoji sequences use is not one of them
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def count_nodes(document: Any, limit: int = MAX_NODES, depth_limit: int = MAX_DEPTH) -> str | None:
    """Why ``document`` is too big (aliases expanded) or too deep, or None. Stops as soon as a limit is passed,
    so a "billion laughs" costs ``limit`` steps, never its expanded size."""
    count = 0
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > limit:
            return f"more than {limit} values once YAML aliases are expanded (a grid has a few hundred)"
        if depth > depth_limit:
            return f"nested more than {depth_limit} levels deep"
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for pair in value.items() for v in pair)
        elif isinstance(value, list | tuple):
            stack.extend((v, depth + 1) for v in value)
    return None


def name_problem(value: str, limit: int = MAX_NAME) -> str | None:
    """Why ``value`` is not a usable name (too long, control characters such as NUL or U+0085, bidirectional
    controls such as U+202E), or None."""
    if len(value) > limit:
        return f"longer than {limit} characters ({len(value)})"
    found = _CONTROL.search(value)
    if found:
        return f"contains a control character (U+{ord(found.group()):04X})"
    found = _BIDI.search(value)
    if found:
        return f"contains a control character (U+{ord(found.group()):04X}, a bidirectional text control)"
    return None


def plugin_problem(value: str) -> str | None:
    if len(value) > MAX_PLUGIN:
        return f"longer than {MAX_PLUGIN} characters ({len(value)})"
    if not _MODULE.fullmatch(value):
        return "not an importable module name (dotted identifiers)"
    return None


def weights_problem(weights: tuple[tuple[float, ...], ...]) -> str | None:
    """A weight matrix no detector setup has: too many sources or observations, huge, or blind somewhere."""
    if len(weights[0]) > MAX_SOURCES or len(weights) > MAX_OBSERVATIONS:
        return (f"at most {MAX_OBSERVATIONS} observations × {MAX_SOURCES} sources, "
                f"got {len(weights)} × {len(weights[0])}")
    if max(max(row) for row in weights) > MAX_WEIGHT:
        return f"weights above {MAX_WEIGHT:g}"
    for i, row in enumerate(weights):
        if not any(row):
            return f"row {i} is all zero: that observation sees no source"
    for j in range(len(weights[0])):
        if not any(row[j] for row in weights):
            return f"column {j} is all zero: no observation sees source {j}"
    return None


def test_set_bytes(mixtures: int, n_sources: int, n_observations: int, downsample: int, pixels: int = 784) -> int:
    """Memory a cell's test set takes: sources, estimates and the clean superposition at full size, observations
    at the detector's size, float32, plus the score rows."""
    per_mixture = (2 * n_sources + 1) * pixels + n_observations * pixels // downsample**2
    return mixtures * (per_mixture * 4 + n_sources * 120)


def memory_total() -> int | None:
    """Physical memory of this machine in bytes (None if unknown)."""
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except (ImportError, OSError):
        return None


def check_grid(grid: Any, fail: Callable[[str, str], Exception]) -> None:
    """Bounds on a validated :class:`sepbench.grid.Grid`; ``fail(key, message)`` makes the error to raise."""
    settings = sum(len(grid.sigmas_for(s)) for s in grid.scenarios)  # scenario × σ pairs
    cells = len(grid.methods) * settings * len(grid.seeds)
    if cells > MAX_CELLS:
        raise fail("(grid)", f"{cells} cells (methods × scenarios × σ × seeds); at most {MAX_CELLS}")
    for i, seed in enumerate(grid.seeds):
        if not 0 <= seed <= MAX_SEED:
            raise fail(f"seeds[{i}]", f"expected 0 ≤ seed ≤ 2**32 - 1, got {str(seed)[:24]}")
    lists = [("noise", grid.noise)] + [(f"scenarios.{s.name}.sigma", s.sigmas) for s in grid.scenarios if s.sigmas]
    for key, sigmas in lists:
        if len(sigmas) > MAX_LIST["noise"]:
            raise fail(key, f"at most {MAX_LIST['noise']} entries, got {len(sigmas)}")
        for i, sigma in enumerate(sigmas):
            if sigma > MAX_SIGMA:
                raise fail(f"{key}[{i}]", f"σ above {MAX_SIGMA:g} on the [0, 1] pixel scale, got {sigma:.3g}")
    budgets = [("train", grid.train)] + [(f"methods[{i}].train", grid.budget_for(e)) for i, e in
                                         enumerate(grid.methods)]
    for key, budget in budgets:
        for name, limit in (("mixtures", MAX_TRAIN_MIXTURES), ("epochs", MAX_EPOCHS), ("batch_size", MAX_BATCH)):
            if getattr(budget, name) > limit:
                raise fail(f"{key}.{name}", f"at most {limit}, got {getattr(budget, name)}")
        if budget.lr > 10:
            raise fail(f"{key}.lr", f"a learning rate above 10, got {budget.lr:.3g}")
    if grid.test_mixtures > MAX_TEST_MIXTURES:
        raise fail("test.mixtures", f"at most {MAX_TEST_MIXTURES} (MNIST has 10000 test images), "
                                    f"got {grid.test_mixtures}")
    total = memory_total()
    for scenario in grid.scenarios:
        problem = weights_problem(scenario.weights)
        if problem:
            raise fail(f"scenarios.{scenario.name[:MAX_NAME]}.weights", problem)
        need = test_set_bytes(grid.test_mixtures, len(scenario.weights[0]), len(scenario.weights),
                              scenario.downsample)
        if total and need > MEMORY_SHARE * total:
            raise fail("test.mixtures", f"{grid.test_mixtures} test mixtures need about {need / 2**30:.1f} GiB, "
                                        f"more than half of this machine's {total / 2**30:.0f} GiB")
