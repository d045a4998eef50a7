"""Cells: the cartesian product method × scenario × σ × seed, with stable ids and skip reasons."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sepbench.api import Method, Resources, Task, TrainBudget
from sepbench.datasets.mnist import MNIST_FINGERPRINT
from sepbench.errors import UserError
from sepbench.grid_model import DatasetSpec, Grid, Scenario
from sepbench.precision import EMULATED_BF16_SPEED, cpu_has_bf16
from sepbench.registry import get_method, import_plugins

CELL_FORMAT = 1  # bump when a change makes old cell results incomparable


@dataclass(frozen=True)
class Cell:
    """One unit of work: train (if needed) and score one method on one (scenario, σ, seed)."""

    method: str
    label: str
    params: dict[str, Any]
    budget: TrainBudget | None  # None for methods that do not train
    scenario: Scenario
    sigma: float
    seed: int
    dataset: DatasetSpec
    test_mixtures: int
    resources: Resources = field(default_factory=Resources)  # what the executor gives it (not part of the id)
    expected_seconds: float = 1.0
    plugins: tuple[str, ...] = ()  # modules to import before the method is looked up (not part of the id)
    test_pairs: str = "random"
    data: str = MNIST_FINGERPRINT  # the source images' fingerprint (part of the id: cells on other data differ)
    timeout: float | None = None  # seconds it may run before its executor ends it (not part of the id)
    keep_model: bool = False  # store the fitted method beside the results (sepbench.models; not part of the id)

    @property
    def datasets(self) -> tuple[DatasetSpec, ...]:
        """Every dataset the cell draws sources from: the scenario's ``sources:`` (one per source), else its one."""
        return self.scenario.sources or (self.dataset,)

    @property
    def task(self) -> Task:
        return scenario_task(self.scenario, self.sigma, self.dataset)

    def config(self) -> dict[str, Any]:
        """Everything that determines the cell's results, as plain JSON-able data."""
        budget = asdict(self.budget) if self.budget else None
        if budget is not None and budget["pairs"] == "fresh":
            del budget["pairs"]  # the default stays out, so that older runs' cell ids stay valid
        config = {
            "format": CELL_FORMAT,
            "method": self.method,
            "label": self.label,
            "params": self.params,
            "budget": budget,
            "scenario": {"name": self.scenario.name, **self.scenario.to_dict()},
            "sigma": self.sigma,
            "seed": self.seed,
            "dataset": self.dataset.to_dict(),  # today's form for a dataset without options (ids stay valid)
            "data": self.data,
            "test_mixtures": self.test_mixtures,
        }
        if self.test_pairs != "random":
            config["test_pairs"] = self.test_pairs
        return config

    @property
    def id(self) -> str:
        """A short hash of the full resolved configuration: same config, same id, in any run."""
        blob = json.dumps(self.config(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def describe(self) -> str:
        return f"{self.label} · {self.scenario.name} · σ={self.sigma:g} · seed {self.seed}"


@dataclass(frozen=True)
class Skip:
    """A (method, scenario) pair the plan leaves out, and why."""

    label: str
    scenario: str
    reason: str


@dataclass(frozen=True)
class Plan:
    cells: tuple[Cell, ...]
    skipped: tuple[Skip, ...]
    not_kept: tuple[tuple[str, str], ...] = ()  # (label, why): models asked for run-wide that cannot be kept


def scenario_task(scenario: Scenario, sigma: float, dataset: DatasetSpec) -> Task:
    """The task a method solves in ``scenario`` at noise ``sigma`` on the images of ``dataset``."""
    return Task(scenario.weights, scenario.downsample, sigma, tuple(dataset.image_size), scenario.superpose,
                noise_model=scenario.noise_model, photons=scenario.photons, blur=scenario.blur,
                blur_width=scenario.blur_width, blur_size=scenario.blur_size, channels=dataset.channels)


REFERENCE_PIXELS = 28 * 28  # the image size the methods' declared rates were measured on (MNIST)


def estimate_seconds(cls: type[Method], budget: TrainBudget | None, test_mixtures: int,
                     params: dict[str, Any] | None = None, dataset: DatasetSpec | None = None) -> float:
    """A rough CPU duration of a cell at the calibration's reference speed, from the method's declared training
    throughput with ``params`` (:mod:`sepbench.calibration` scales it to this machine). The rates are per
    28 × 28 grey mixture: other image sizes and colour scale the training time with the pixel count."""
    seconds = 2.0 + test_mixtures * 2e-4  # loading data and scoring
    rate = cls.cpu_rate(params or {}) if budget is not None else 0.0
    if budget is not None and rate > 0:
        if budget.precision != "fp32" and cls.supports_bf16:
            if cpu_has_bf16():
                rate *= cls.cpu_bf16_speedup
            elif budget.precision == "bf16":  # asked for explicitly, so emulated ('auto' resolves to fp32 here)
                rate *= EMULATED_BF16_SPEED
        seconds += budget.epochs * budget.mixtures / rate * pixel_scale(dataset)
    return seconds


def pixel_scale(dataset: DatasetSpec | None) -> float:
    """A dataset's values per image over MNIST's (1.0 where the size is not known before loading)."""
    if dataset is None or not all(dataset.image_size):
        return 1.0
    return dataset.image_size[0] * dataset.image_size[1] * max(dataset.channels, 1) / REFERENCE_PIXELS


def cell_resources(declared: Resources, entry: dict[str, float], gpu_share: float | None = None) -> Resources:
    """What a cell asks the executor for: the method's declaration, then the grid entry's ``resources``, then the
    run's ``--gpu-share`` (which changes only cells that use a GPU). Resources never change a cell's id or results."""
    resources = replace(declared, **entry)
    if gpu_share is not None and resources.gpu > 0:
        resources = replace(resources, gpu=gpu_share)
    return resources


def check_source_counts(grid: Grid) -> None:
    """A scenario whose number of sources no method of the grid separates is an error, before any work."""
    classes = {entry.label: get_method(entry.method) for entry in grid.methods}
    for scenario in grid.scenarios:
        n = len(scenario.weights[0])
        if not any(cls.requires.serves_sources(n) for cls in classes.values()):
            served = "; ".join(f"{label}: {cls.requires.sources_text()}" for label, cls in classes.items())
            raise UserError(f"{grid.source}: scenarios.{scenario.name}: {n} source(s), which no method of the grid "
                            f"separates (sources served: {served})")


def plan_grid(grid: Grid, gpu_share: float | None = None, cell_timeout: float | None = None,
              keep_models: bool = False) -> Plan:
    """Resolve methods and parameters and list the cells; any error is raised before work starts.

    ``gpu_share``: the share of a GPU every GPU cell of this run takes (``bench run --gpu-share``);
    ``cell_timeout``: seconds a cell may run unless its grid entry sets its own ``timeout`` (``--cell-timeout``);
    ``keep_models`` (``bench run --keep-models``): every entry whose method can be kept keeps its fitted method."""
    cells: list[Cell] = []
    skipped: list[Skip] = []
    not_kept: list[tuple[str, str]] = []
    import_plugins(grid.plugins, where=f"{grid.source}: plugins")
    check_source_counts(grid)
    for entry in grid.methods:
        cls = get_method(entry.method)
        try:
            params = cls.resolve_params(entry.params)
        except UserError as exc:
            raise UserError(f"{grid.source}: methods: {entry.label}: {exc}") from None
        learned = cls.requires.needs_training
        budget = grid.budget_for(entry) if learned else None
        # a method that does not learn is deterministic: one seed stands for all
        seeds = grid.seeds if learned else grid.seeds[:1]
        resources = cell_resources(cls.resources, entry.resources, gpu_share)
        timeout = entry.timeout if entry.timeout is not None else cell_timeout
        keep = entry.keep_model or grid.keep_models or keep_models
        if keep and not cls.can_be_kept():
            why = f"method {entry.method!r} cannot be kept (it does not implement Method.save_state/load_state)"
            if entry.keep_model:
                raise UserError(f"{grid.source}: methods: {entry.label}: train.keep_model: {why}")
            not_kept.append((entry.label, why))
            keep = False
        served = 0
        for scenario in grid.scenarios:
            dataset = grid.dataset_for(scenario)
            reason = cls.unsupported_reason(scenario_task(scenario, 0.0, dataset))
            if reason:
                skipped.append(Skip(entry.label, scenario.name, reason))
                continue
            served += 1
            for sigma in grid.sigmas_for(scenario):
                try:  # the method's own checks (ranges, relations between parameters), before any cell runs
                    cls.check_params(params, scenario_task(scenario, sigma, dataset))
                except UserError as exc:
                    raise UserError(f"{grid.source}: methods: {entry.label}: scenario {scenario.name} "
                                    f"(σ={sigma:g}): {exc}") from None
                for seed in seeds:
                    cells.append(Cell(entry.method, entry.label, params, budget, scenario, sigma, seed,
                                      dataset, grid.test_mixtures, resources,
                                      estimate_seconds(cls, budget, grid.test_mixtures, params, dataset), grid.plugins,
                                      grid.test_pairs, grid.data_for(scenario),
                                      timeout=timeout, keep_model=keep))
        if not served:
            reasons = "; ".join(f"{s.scenario}: {s.reason}" for s in skipped if s.label == entry.label)
            raise UserError(f"{grid.source}: methods: {entry.label} cannot serve any scenario of the grid "
                            f"({reasons})")
    return Plan(tuple(cells), tuple(skipped), tuple(not_kept))
