"""The validated grid: the frozen dataclasses a grid file becomes (:mod:`sepbench.grid` reads and checks the file).

The planner reads these; ``Grid.to_dict`` writes them back in the grid file's own format.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sepbench.api import TrainBudget
from sepbench.datasets import dataset_key
from sepbench.grid_forward import forward_to_dict


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset as a grid names it (name, sizes, options), and what the grid read of it from the registry."""

    name: str = "mnist"
    train_size: int = 60000
    test_size: int = 10000
    options: dict[str, Any] = field(default_factory=dict)  # passed to the Dataset (e.g. color: true)
    # resolved from the registered Dataset when the grid is read (not part of a cell's id: they follow from the above)
    image_size: tuple[int, int] = (0, 0)
    channels: int = 1
    fingerprint: str = ""
    labelled: bool = False

    @property
    def key(self) -> str:
        """Names the source images that test sets are drawn from: equal keys, equal test mixtures."""
        return dataset_key(self.name, self.train_size, self.test_size, self.options)

    def to_dict(self) -> dict[str, Any]:
        """The grid file's form (and a cell's config): options only when given (older cell ids stay valid)."""
        out: dict[str, Any] = {"name": self.name, "train_size": self.train_size, "test_size": self.test_size}
        return {**out, **dict(self.options)} if self.options else out


@dataclass(frozen=True)
class Scenario:
    name: str
    weights: tuple[tuple[float, ...], ...]
    downsample: int = 2
    superpose: str = "sum"  # or "uint8-wrap", the paper's public code's uint8 sum (see datasets/forward.py)
    # the noise model and blur (sepbench.grid_forward reads them; the defaults are the original forward model)
    noise_model: str = "gaussian"  # or "poisson-gaussian"
    photons: float = 0.0
    blur: str = "none"  # or "gaussian" (blur_width) or "random" (blur_size)
    blur_width: float = 0.0
    blur_size: int = 0
    dataset: DatasetSpec | None = None  # the scenario's own dataset (`dataset:` inside it); None: the grid's
    sigmas: tuple[float, ...] | None = None  # the scenario's own σ list (`sigma:` inside it); None: the grid's

    def to_dict(self) -> dict[str, Any]:
        """The grid file's form; ``superpose``, ``noise`` and ``blur`` only when not the default (older runs' cell
        ids stay valid)."""
        out: dict[str, Any] = {"weights": [list(r) for r in self.weights], "downsample": self.downsample}
        if self.superpose != "sum":
            out["superpose"] = self.superpose
        out.update(forward_to_dict(self))
        return out


@dataclass(frozen=True)
class MethodEntry:
    method: str
    label: str
    params: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=dict)  # overrides of the method's cpu / gpu per cell
    timeout: float | None = None  # seconds a cell of this entry may run (wins over `bench run --cell-timeout`)
    keep_model: bool = False  # `train: {keep_model: true}`: store the fitted method (never part of a cell's id)


@dataclass(frozen=True)
class Grid:
    name: str
    dataset: DatasetSpec
    scenarios: tuple[Scenario, ...]
    noise: tuple[float, ...]
    seeds: tuple[int, ...]
    train: TrainBudget
    test_mixtures: int
    methods: tuple[MethodEntry, ...]
    plugins: tuple[str, ...] = ()
    source: str = "<memory>"
    test_pairs: str = "random"  # sepbench's seeded test pairs, or "paper": the public code's test pairs
    keep_models: bool = False  # the top-level `train: {keep_model: true}`: every entry keeps its fitted method

    def dataset_for(self, scenario: Scenario) -> DatasetSpec:
        """The dataset a scenario's sources come from: its own, else the grid's default."""
        return scenario.dataset or self.dataset

    def sigmas_for(self, scenario: Scenario) -> tuple[float, ...]:
        """The noise levels σ of ``scenario``: its own ``sigma:`` list, else the grid's ``noise``."""
        return scenario.sigmas if scenario.sigmas is not None else self.noise

    def budget_for(self, entry: MethodEntry) -> TrainBudget:
        """The grid's training defaults with the entry's overrides applied."""
        return replace(self.train, **entry.train)

    def to_dict(self) -> dict[str, Any]:
        """The resolved grid, in the grid file's own format (written to the run directory)."""
        return {
            "name": self.name,
            "dataset": self.dataset.to_dict(),
            "scenarios": {s.name: {**s.to_dict(), **({"dataset": s.dataset.to_dict()} if s.dataset else {}),
                                   **({"sigma": list(s.sigmas)} if s.sigmas is not None else {})}
                          for s in self.scenarios},
            "noise": list(self.noise),
            "seeds": list(self.seeds),
            "train": {**asdict(self.train), **({"keep_model": True} if self.keep_models else {})},
            "test": {"mixtures": self.test_mixtures, **({"pairs": self.test_pairs} if self.test_pairs != "random"
                                                         else {})},
            "methods": [{"method": m.method, "label": m.label, "params": dict(m.params),
                         "train": {**m.train, **({"keep_model": True} if m.keep_model else {})},
                         **({"resources": dict(m.resources)} if m.resources else {}),
                         **({"timeout": m.timeout} if m.timeout is not None else {})} for m in self.methods],
            "plugins": list(self.plugins),
        }
