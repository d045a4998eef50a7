"""What the method contract runs a method on: a tiny task, synthetic digits, and one cached fit per scenario.

Every check of :mod:`sepbench.contract` that looks at outputs reads the same :class:`ScenarioRun` (fit once,
separate once, per method, parameters, scenario, device and seed), so that running the checks one by one, as
named pytest cases, costs no more than running them all at once.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

from sepbench.api import FitContext, Method, TrainBudget
from sepbench.datasets.mixtures import TrainingData, make_test_set
from sepbench.datasets.task import Task

SCENARIOS: dict[str, tuple[tuple[float, ...], ...]] = {"single": ((1.0, 1.0),), "dual": ((0.7, 0.3), (0.3, 0.7))}
TINY_BUDGET = TrainBudget(mixtures=32, epochs=1, batch_size=16, lr=1e-3)
N_VALIDATION = 16
N_TEST = 6
CACHE_SIZE = 4  # scenario runs kept: both scenarios of the last two (method, parameters) pairs


def scenario_task(label: str) -> Task:
    """The contract's task for scenario ``label`` ('single' or 'dual'): downsampling 2, σ = 0.01."""
    return Task(SCENARIOS[label], downsample=2, sigma=0.01)


def error_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (the rest of a long message would drown the report)."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def synthetic_digits(n: int, seed: int = 0, size: int = 28) -> torch.Tensor:
    """``n`` digit-like images ``(n, size, size)`` in [0, 1]: a random 3-stroke polyline, ~3 px wide, centred."""
    gen = torch.Generator().manual_seed(seed)
    points = size * (0.22 + 0.56 * torch.rand(n, 4, 2, generator=gen))  # inside the central box, like MNIST
    start, end = points[:, :-1, None, None, :], points[:, 1:, None, None, :]
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    pixels = torch.stack([rows, cols], dim=-1).float() + 0.5
    direction = end - start
    along = ((pixels - start) * direction).sum(-1) / (direction * direction).sum(-1).clamp_min(1e-6)
    nearest = start + along.clamp(0, 1)[..., None] * direction
    distance = (pixels - nearest).norm(dim=-1).amin(dim=1)
    return (2.0 - distance).clamp(0.0, 1.0)


def training_data(cls: type[Method], task: Task, device: torch.device, seed: int) -> TrainingData | None:
    """The tiny training data a cell of ``cls`` would get (None if it does not learn)."""
    if not cls.requires.needs_training:
        return None
    return TrainingData(synthetic_digits(256, seed=1).to(device), task, TINY_BUDGET.mixtures, seed,
                        n_validation=N_VALIDATION)


def data_tensors(data: TrainingData | None) -> dict[str, torch.Tensor]:
    """The tensors ``fit`` is handed in ``data``, by name: the source images, the validation set, the weights."""
    if data is None:
        return {}
    return {"images": data.images, "weights": data.weights,
            **{f"validation.{k}": v for k, v in data.validation._asdict().items()}}


def fit(cls: type[Method], task: Task, params: dict[str, Any], device: torch.device, seed: int,
        data: TrainingData | None = None) -> Method:
    """Construct and fit the method as a cell does: seeded, with data only if it learns (``data`` if given)."""
    method = cls(task, **params)
    if data is None:
        data = training_data(cls, task, device, seed)
    torch.manual_seed(seed)
    method.fit(data, FitContext(device=device, seed=seed, budget=TINY_BUDGET))
    return method


@dataclass
class ScenarioRun:
    """One scenario of the contract, run once: the test observations, the fitted method and its output.

    ``error`` names the step that failed ('fit' or 'separate') and why; then ``method`` or ``out`` is None.
    """

    cls: type[Method]
    label: str
    params: dict[str, Any]
    device: torch.device
    seed: int
    task: Task
    y: torch.Tensor  # what separate was given (a method that writes into its input changes it)
    before: torch.Tensor  # a copy of y taken before separate
    expected: tuple[int, ...]  # (N, S, H, W)
    unsupported: str | None = None
    method: Method | None = None
    out: Any = None
    fit_seconds: float = 0.0
    error: str | None = None
    data_changed: list[str] | None = None  # the training tensors fit modified (None: the method got no data)
    _again: Any = field(default=None, repr=False)

    def refit_output(self) -> torch.Tensor:
        """The output of a second, independent fit with the same seed (computed once)."""
        if self._again is None:
            self._again = fit(self.cls, self.task, self.params, self.device, self.seed).separate(self.y)
        return self._again


def _same(before: torch.Tensor, now: torch.Tensor) -> bool:
    return before.shape == now.shape and before.dtype == now.dtype and bool(torch.equal(before, now.to(before.device)))


_RUNS: OrderedDict[tuple[Any, ...], ScenarioRun] = OrderedDict()


def scenario_run(cls: type[Method], label: str, params: dict[str, Any], device: torch.device,
                 seed: int) -> ScenarioRun:
    """The contract's run of ``cls`` on scenario ``label``: fitted and separated once, then served from a cache."""
    key = (cls, label, json.dumps(params, sort_keys=True, default=repr), str(device), seed)
    if key in _RUNS:
        _RUNS.move_to_end(key)
        return _RUNS[key]
    task = scenario_task(label)
    test = make_test_set(synthetic_digits(64, seed=2), task, N_TEST, f"contract:{label}")
    y = test.y.to(device)
    run = ScenarioRun(cls, label, params, device, seed, task, y, y.clone(), tuple(test.x.shape),
                      unsupported=cls.unsupported_reason(task))
    if run.unsupported is None:
        started = time.perf_counter()
        data = training_data(cls, task, device, seed)
        given = data_tensors(data)  # the tensors themselves: what fit writes into them, not what it rebinds
        before = {name: tensor.clone() for name, tensor in given.items()}
        try:
            run.method = fit(cls, task, params, device, seed, data)
            run.fit_seconds = time.perf_counter() - started
            run.out = run.method.separate(y)
        except Exception as exc:
            run.error = f"{'separate' if run.method else 'fit'} raised {error_line(exc)}"
        if data is not None:
            run.data_changed = [name for name, tensor in before.items() if not _same(tensor, given[name])]
    _RUNS[key] = run
    while len(_RUNS) > CACHE_SIZE:
        _RUNS.popitem(last=False)
    return run
