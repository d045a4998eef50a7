"""The method API: the one seam every built-in method and every plugin depends on.

A method is a class with declared requirements, resources and parameters. ``__init__`` stores and
validates hyper-parameters, ``fit`` learns from a :class:`sepbench.datasets.mixtures.TrainingData`, ``separate``
maps observations ``(N, K, h, w)`` to source estimates ``(N, S, H, W)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from sepbench.errors import ParameterError
from sepbench.values import coerce

if TYPE_CHECKING:
    from sepbench.datasets.mixtures import TrainingData


@dataclass(frozen=True)
class Task:
    """What a method is asked to solve: S sources seen through K weighted, pooled, noisy observations."""

    weights: tuple[tuple[float, ...], ...]  # K rows (observations) × S columns (sources)
    downsample: int
    sigma: float
    source_shape: tuple[int, int] = (28, 28)
    superpose: str = "sum"  # how sources add up at the detector: "sum", or "uint8-wrap" (the public code's)

    @property
    def n_sources(self) -> int:
        return len(self.weights[0])

    @property
    def n_observations(self) -> int:
        return len(self.weights)

    @property
    def observation_shape(self) -> tuple[int, int]:
        return (self.source_shape[0] // self.downsample, self.source_shape[1] // self.downsample)

    def weight_matrix(self, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.tensor(self.weights, dtype=torch.float32, device=device)


@dataclass(frozen=True)
class Requirements:
    """What a method needs from a scenario and from the run."""

    min_observations: int = 1
    max_observations: int | None = None
    n_sources: int = 2
    needs_training: bool = False


@dataclass(frozen=True)
class Resources:
    """What one cell of a method asks the executor for (fractional GPUs share a device)."""

    cpu: float = 1.0
    gpu: float = 0.0


@dataclass(frozen=True)
class Param:
    """A declared hyper-parameter: its default, its type, and the values it may take."""

    default: Any
    type: type = float
    choices: tuple[Any, ...] | None = None
    positive: bool = False
    help: str = ""

    def validate(self, method: str, name: str, value: Any) -> Any:
        try:
            value = coerce(value, self.type)
        except TypeError:
            raise ParameterError(
                f"method {method!r}: parameter {name!r} must be {self.type.__name__}, got {value!r}"
            ) from None
        if self.choices is not None and value not in self.choices:
            options = ", ".join(map(str, self.choices))
            raise ParameterError(f"method {method!r}: parameter {name!r} must be one of {options}, got {value!r}")
        if self.positive and not value > 0:
            raise ParameterError(f"method {method!r}: parameter {name!r} must be > 0, got {value!r}")
        return value


@dataclass(frozen=True)
class TrainBudget:
    """How much a learned method may train: mixtures per epoch, epochs, batch size, learning rate."""

    mixtures: int = 2000
    epochs: int = 2
    batch_size: int = 64
    lr: float = 1e-3
    precision: str = "fp32"
    pairs: str = "fresh"  # training pairs drawn afresh each epoch, or "paper": the public code's fixed 60,000


@dataclass
class FitContext:
    """Everything ``fit`` gets besides the data: device, seed, budget, progress and a logger."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    budget: TrainBudget = field(default_factory=TrainBudget)
    progress: Callable[[dict[str, Any]], None] = lambda info: None
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("sepbench.method"))


class Method:
    """Base class of every separation method. Subclass, declare, and register with ``@register_method``."""

    name: ClassVar[str] = ""
    requires: ClassVar[Requirements] = Requirements()
    resources: ClassVar[Resources] = Resources()
    parameters: ClassVar[dict[str, Param]] = {}
    #: rough fp32 training throughput of one cell on one CPU thread (mixtures/s), used only to estimate run time
    cpu_mixtures_per_s: ClassVar[float] = 0.0
    #: how much faster training runs under bf16 autocast on a CPU with bf16 instructions (estimate only)
    cpu_bf16_speedup: ClassVar[float] = 1.0

    def __init__(self, task: Task, **params: Any) -> None:
        self.task = task
        self.params = self.check_params(params)
        self.device = torch.device("cpu")

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Validate user parameters against the declaration and fill in defaults."""
        unknown = sorted(set(params) - set(cls.parameters))
        if unknown:
            known = ", ".join(sorted(cls.parameters)) or "none"
            raise ParameterError(f"method {cls.name!r}: unknown parameter {unknown[0]!r} (known: {known})")
        resolved = {}
        for key, spec in cls.parameters.items():
            resolved[key] = spec.validate(cls.name, key, params[key]) if key in params else spec.default
        return resolved

    @classmethod
    def unsupported_reason(cls, task: Task) -> str | None:
        """Why this method cannot serve ``task``, or None if it can."""
        req = cls.requires
        k = task.n_observations
        if k < req.min_observations:
            return f"needs at least {req.min_observations} observations, scenario has {k}"
        if req.max_observations is not None and k > req.max_observations:
            return f"takes at most {req.max_observations} observations, scenario has {k}"
        if task.n_sources != req.n_sources:
            return f"separates {req.n_sources} sources, scenario has {task.n_sources}"
        return None

    def fit(self, data: TrainingData, ctx: FitContext) -> Method:
        """Learn from ``data``. Non-learned methods only move to ``ctx.device``."""
        self.device = ctx.device
        return self

    def separate(self, y: torch.Tensor) -> torch.Tensor:
        """Observations ``(N, K, h, w)`` → estimates ``(N, S, H, W)``; each output depends on its own input only."""
        raise NotImplementedError

    def n_parameters(self) -> int:
        """Number of learned parameters (0 for methods without a network)."""
        return 0


_REGISTRY: dict[str, type[Method]] = {}
_ORIGINS: dict[str, str] = {}


def register_method(name: str, *, origin: str = "built-in") -> Callable[[type[Method]], type[Method]]:
    """Class decorator: make a :class:`Method` available to grids under ``name``."""

    def decorate(cls: type[Method]) -> type[Method]:
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise TypeError(f"@register_method({name!r}) needs a Method subclass, got {cls!r}")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"method name {name!r} is already taken by {_REGISTRY[name].__module__}")
        cls.name = name
        _REGISTRY[name] = cls
        _ORIGINS.setdefault(name, origin)
        return cls

    return decorate
