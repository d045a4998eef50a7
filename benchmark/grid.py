"""Grid files: YAML parsed with ``safe_load`` and validated into the dataclasses of :mod:`sepbench.grid_model`.

Every error names the file, the key and what was expected, and is raised before any work starts.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sepbench import bounds
from sepbench.api import TrainBudget
from sepbench.errors import GridError, short
from sepbench.grid_datasets import check_downsample, parse_dataset
from sepbench.grid_forward import parse_forward
from sepbench.grid_model import DatasetSpec, Grid, MethodEntry, Scenario
from sepbench.grid_yaml import DuplicateKey, load_text
from sepbench.precision import PRECISIONS
from sepbench.values import coerce

TOP_KEYS = {"name", "dataset", "scenarios", "noise", "seeds", "train", "test", "methods", "plugins"}
TRAIN_KEYS = {"mixtures": int, "epochs": int, "batch_size": int, "lr": float, "precision": str, "pairs": str,
              "keep_model": bool}  # keep_model: store the fitted method (sepbench.models); not a training budget
SUPERPOSE_MODES = ("sum", "uint8-wrap")
TRAIN_PAIRS = ("fresh", "paper")
TEST_PAIRS = ("random", "paper")


class _Checker:
    """Type checks that raise a GridError naming the file and the key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> GridError:
        return GridError(f"{self.source}: {key}: {message}")

    def typed(self, key: str, value: Any, kind: type) -> Any:
        try:
            return coerce(value, kind)
        except TypeError as exc:
            raise self.fail(key, str(exc)) from None

    def mapping(self, key: str, value: Any, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {short(value)}")
        unknown = sorted(set(map(str, value)) - allowed)
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})")
        return value

    def positive_int(self, key: str, value: Any) -> int:
        value = self.typed(key, value, int)
        if value <= 0:
            raise self.fail(key, f"expected a positive integer, got {value}")
        return value

    def sequence(self, key: str, value: Any) -> list[Any]:
        if not isinstance(value, list) or not value:
            raise self.fail(key, f"expected a non-empty list, got {short(value)}")
        limit = bounds.MAX_LIST.get(key)
        if limit is not None and len(value) > limit:
            raise self.fail(key, f"at most {limit} entries, got {len(value)}")
        return value

    def name(self, key: str, value: Any) -> str:
        """A string that names something (label, scenario, method): bounded length, no control characters."""
        value = self.typed(key, value, str)
        problem = bounds.name_problem(value)
        if problem:
            raise self.fail(key, f"{problem}: {short(value)}")
        return value


def _train(check: _Checker, key: str, raw: Any) -> dict[str, Any]:
    raw = check.mapping(key, raw, set(TRAIN_KEYS))
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "lr":
            value = check.typed(f"{key}.lr", value, float)
            if not (value > 0 and math.isfinite(value)):
                raise check.fail(f"{key}.lr", f"expected a positive learning rate, got {value}")
        elif name == "pairs":
            value = check.typed(f"{key}.pairs", value, str)
            if value not in TRAIN_PAIRS:
                raise check.fail(f"{key}.pairs", f"expected one of {', '.join(TRAIN_PAIRS)}, got {short(value)}")
        elif name == "keep_model":
            value = check.typed(f"{key}.keep_model", value, bool)
        elif name == "precision":
            value = check.typed(f"{key}.precision", value, str)
            if value not in PRECISIONS:
                raise check.fail(f"{key}.precision", f"expected one of {', '.join(PRECISIONS)}, got {short(value)}")
        else:
            value = check.positive_int(f"{key}.{name}", value)
        out[name] = value
    return out


def check_gpu_share(value: Any) -> float:
    """A cell's share of GPUs: a fraction 0 < gpu ≤ 1 (cells share one GPU) or a whole number of GPUs (0: none)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"expected a number of GPUs, got {short(value)}")
    if value < 0 or value > 1 and value != int(value):
        raise ValueError(f"expected a fraction 0 < gpu ≤ 1 or a whole number of GPUs, got {value:g}")
    return float(value)


def check_timeout(value: Any) -> float:
    """A cell's time limit: a positive, finite number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"expected a positive number of seconds, got {short(value)}")
    return float(value)


def _resources(check: _Checker, key: str, raw: Any) -> dict[str, float]:
    raw = check.mapping(key, raw, {"cpu", "gpu"})
    out: dict[str, float] = {}
    if "gpu" in raw:
        try:
            out["gpu"] = check_gpu_share(raw["gpu"])
        except ValueError as exc:
            raise check.fail(f"{key}.gpu", str(exc)) from None
    if "cpu" in raw:
        cpu = check.typed(f"{key}.cpu", raw["cpu"], float)
        if not (cpu >= 1 and math.isfinite(cpu)):
            raise check.fail(f"{key}.cpu", f"expected a number of CPUs ≥ 1, got {cpu:g}")
        out["cpu"] = cpu
    return out


def _sigmas(check: _Checker, key: str, raw: Any) -> tuple[float, ...]:
    """A list of noise levels σ (a single number is a list of one): finite, ≥ 0, duplicates dropped."""
    values = []
    for i, sigma in enumerate(check.sequence(key, [raw] if isinstance(raw, int | float) else raw)):
        sigma = check.typed(f"{key}[{i}]", sigma, float)
        if sigma < 0 or not math.isfinite(sigma):
            raise check.fail(f"{key}[{i}]", f"σ must be a finite number ≥ 0, got {sigma}")
        values.append(sigma)
    return tuple(dict.fromkeys(values))


def _scenarios(check: _Checker, raw: Any, default: DatasetSpec, plugins: list[str]) -> tuple[Scenario, ...]:
    if not isinstance(raw, dict) or not raw:
        raise check.fail("scenarios", "expected a non-empty mapping of name → {weights, downsample}, "
                                      f"got {short(raw)}")
    if len(raw) > bounds.MAX_LIST["scenarios"]:
        raise check.fail("scenarios", f"at most {bounds.MAX_LIST['scenarios']} scenarios, got {len(raw)}")
    scenarios = []
    for name, spec in raw.items():
        name = check.name("scenarios", str(name) if isinstance(name, int | float) else name)
        key = f"scenarios.{name}"
        spec = check.mapping(key, spec, {"weights", "downsample", "superpose", "noise", "blur", "dataset", "sigma"})
        dataset = parse_dataset(check.fail, f"{key}.dataset", spec["dataset"], plugins, check.source) \
            if "dataset" in spec else None
        if "weights" not in spec:
            raise check.fail(key, "missing 'weights' (rows = observations, columns = sources)")
        rows = check.sequence(f"{key}.weights", spec["weights"])
        weights = []
        for i, row in enumerate(rows):
            row = check.sequence(f"{key}.weights[{i}]", row)
            values = tuple(check.typed(f"{key}.weights[{i}]", v, float) for v in row)
            if any(v < 0 or not math.isfinite(v) for v in values):
                raise check.fail(f"{key}.weights[{i}]", f"weights must be finite and non-negative, got {short(row)}")
            weights.append(values)
        if len({len(r) for r in weights}) != 1:
            raise check.fail(f"{key}.weights", "every row needs the same number of source weights")
        downsample = check.positive_int(f"{key}.downsample", spec.get("downsample", 2))
        check_downsample(check.fail, f"{key}.downsample", downsample, dataset or default)
        superpose = check.typed(f"{key}.superpose", spec.get("superpose", "sum"), str)
        if superpose not in SUPERPOSE_MODES:
            raise check.fail(f"{key}.superpose",
                             f"expected one of {', '.join(SUPERPOSE_MODES)}, got {short(superpose)}")
        sigmas = _sigmas(check, f"{key}.sigma", spec["sigma"]) if "sigma" in spec else None
        scenarios.append(Scenario(str(name), tuple(weights), downsample, superpose,
                                  **parse_forward(check, key, spec), dataset=dataset, sigmas=sigmas))
    return tuple(scenarios)


def _methods(check: _Checker, raw: Any) -> tuple[MethodEntry, ...]:
    entries = []
    for i, item in enumerate(check.sequence("methods", raw)):
        key = f"methods[{i}]"
        if isinstance(item, str):
            item = check.name(key, item)
            entries.append(MethodEntry(item, item))
            continue
        item = check.mapping(key, item, {"method", "label", "params", "train", "resources", "timeout"})
        if "method" not in item:
            raise check.fail(key, "missing 'method' (a registered method name)")
        method = check.name(f"{key}.method", item["method"])
        label = check.name(f"{key}.label", item.get("label", method))
        params = item.get("params", {}) or {}
        if not isinstance(params, dict):
            raise check.fail(f"{key}.params", f"expected a mapping, got {short(params)}")
        train = _train(check, f"{key}.train", item.get("train", {}) or {})
        keep = train.pop("keep_model", False)
        resources = _resources(check, f"{key}.resources", item.get("resources", {}) or {})
        timeout = None
        if "timeout" in item:
            try:
                timeout = check_timeout(item["timeout"])
            except ValueError as exc:
                raise check.fail(f"{key}.timeout", str(exc)) from None
        entries.append(MethodEntry(method, label, dict(params), train, resources, timeout, keep))
    labels = [e.label for e in entries]
    duplicates = sorted({x for x in labels if labels.count(x) > 1})
    if duplicates:
        raise check.fail("methods", f"label {short(duplicates[0])} is used twice: give variants distinct labels")
    return tuple(entries)


def parse_grid(raw: Any, source: str = "<memory>") -> Grid:
    """Validate a parsed YAML document into a :class:`Grid` (methods are resolved later, by the planner)."""
    check = _Checker(source)
    problem = bounds.count_nodes(raw)
    if problem:
        raise check.fail("(document)", problem)
    raw = check.mapping("(top level)", raw, TOP_KEYS)
    for required in ("name", "scenarios", "noise", "seeds", "methods"):
        if required not in raw:
            raise check.fail(required, "missing required key")
    name = check.name("name", raw["name"])
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise check.fail("name", f"expected a plain directory name, got {short(name)}")
    plugins = raw.get("plugins", []) or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise check.fail("plugins", f"expected a list of importable module names, got {short(plugins)}")
    for i, plugin in enumerate(plugins[:bounds.MAX_LIST["plugins"] + 1]):
        problem = bounds.plugin_problem(plugin) if i < bounds.MAX_LIST["plugins"] else "too many plugins"
        if problem:
            raise check.fail(f"plugins[{i}]", f"{problem}: {short(plugin)}")
    dataset = parse_dataset(check.fail, "dataset", raw.get("dataset", "mnist"), plugins, source)
    noise = _sigmas(check, "noise", raw["noise"])
    seeds = []
    for i, seed in enumerate(check.sequence("seeds", raw["seeds"])):
        seeds.append(check.typed(f"seeds[{i}]", seed, int))
    train_raw = _train(check, "train", raw.get("train", {}) or {})
    keep_models = train_raw.pop("keep_model", False)
    train = TrainBudget(**train_raw)
    test = check.mapping("test", raw.get("test", {}) or {}, {"mixtures", "pairs"})
    test_mixtures = check.positive_int("test.mixtures", test.get("mixtures", dataset.test_size))
    test_pairs = check.typed("test.pairs", test.get("pairs", "random"), str)
    if test_pairs not in TEST_PAIRS:
        raise check.fail("test.pairs", f"expected one of {', '.join(TEST_PAIRS)}, got {short(test_pairs)}")
    grid = Grid(name, dataset, _scenarios(check, raw["scenarios"], dataset, plugins), tuple(dict.fromkeys(noise)),
                tuple(dict.fromkeys(seeds)), train, test_mixtures, _methods(check, raw["methods"]),
                tuple(plugins), source, test_pairs, keep_models)
    _check_paper_pairs(check, grid)
    bounds.check_grid(grid, check.fail)
    return grid


def _check_paper_pairs(check: _Checker, grid: Grid) -> None:
    """The paper's pairs index whole MNIST splits and pair two sources: say so before any work starts."""
    wants_train = [e.label for e in grid.methods if grid.budget_for(e).pairs == "paper"]
    if grid.test_pairs != "paper" and not wants_train:
        return
    for scenario in grid.scenarios:
        if len(scenario.weights[0]) != 2:
            raise check.fail(f"scenarios.{scenario.name}", "the paper's pairs need two sources per mixture")
        if grid.dataset_for(scenario).name != "mnist" or scenario.dataset not in (None, grid.dataset):
            raise check.fail(f"scenarios.{scenario.name}", "the paper's pairs index the grid's MNIST images: a "
                             "scenario on another dataset cannot use them")
    if grid.test_pairs == "paper":
        if grid.dataset.test_size != 10000:
            raise check.fail("test.pairs", "the paper's test pairs index all 10000 MNIST test images: "
                             f"dataset.test_size is {grid.dataset.test_size}")
        if grid.test_mixtures > 10000:
            raise check.fail("test.mixtures", f"the paper has 10000 test pairs, {grid.test_mixtures} asked for")
    if wants_train:
        if grid.dataset.train_size != 60000:
            raise check.fail("train.pairs", "the paper's training pairs index all 60000 MNIST training images: "
                             f"dataset.train_size is {grid.dataset.train_size}")
        for entry in grid.methods:
            budget = grid.budget_for(entry)
            if budget.pairs == "paper" and budget.mixtures > 60000:
                raise check.fail("train.mixtures", f"{entry.label}: the paper has 60000 training pairs, "
                                 f"{budget.mixtures} asked for")


def packaged_grids() -> list[str]:
    """Names of the grids shipped with sepbench."""
    folder = resources.files("sepbench") / "grids"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_grid_path(name_or_path: str) -> Path:
    """A path as given, or the packaged grid of that bare name (``quick`` or ``quick.yaml``)."""
    path = Path(name_or_path)
    if path.exists() and not path.is_dir():  # a folder of that name (the repository's datasets/) is no grid file
        return path
    stem = path.name[:-5] if path.name.endswith(".yaml") else path.name
    if path.parent == Path(".") and stem in packaged_grids():
        return Path(str(resources.files("sepbench") / "grids" / f"{stem}.yaml"))
    raise GridError(f"{name_or_path}: no such grid file (packaged grids: {', '.join(packaged_grids())})")


def load_grid(name_or_path: str) -> Grid:
    """Read and validate a grid file."""
    path = resolve_grid_path(name_or_path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(bounds.MAX_FILE_BYTES + 1)
        if len(data) > bounds.MAX_FILE_BYTES:
            raise GridError(f"{path}: larger than {bounds.MAX_FILE_BYTES // 1024} KiB: not a grid file")
        raw = load_text(data)  # safe: plain data only; a key given twice is refused
    except DuplicateKey as exc:
        raise GridError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise GridError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    except OSError as exc:
        raise GridError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_grid(raw, str(path))
