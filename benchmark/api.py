"""The method API: the one seam every built-in method and every plugin depends on.

A method is a class with declared requirements, resources and parameters. ``__init__`` stores and
validates hyper-parameters, ``fit`` learns from a :class:`sepbench.datasets.mixtures.TrainingData`, ``separate``
maps observations ``(N, K, h, w)`` to source estimates ``(N, S, H, W)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from sepbench.datasets.task import Task
from sepbench.errors import ParameterError, short
from sepbench.values import coerce

if TYPE_CHECKING:
    from sepbench.datasets.mixtures import TrainingData


@dataclass(frozen=True)
class Requirements:
    """What a method needs from a scenario and from the run.

    ``observation_shape`` (h, w): the one observation size a network is built for (e.g. the paper's 14×14); None,
    the default, serves any size. Scenarios of another size are skipped at planning, with the reason.
    ``n_sources``: the number S of sources the method separates: one number (2, the default: exactly S = 2), a
    tuple of the numbers it serves (the built-in networks: ``SERVED_SOURCES``, S = 2 to 4), or None for any S.

    ``color``: the method takes sources of C > 1 channels, seeing observations ``(N, K, C, h, w)`` and returning
    ``(N, S, C, H, W)``; without it (the default) scenarios on a colour dataset are skipped at planning. Every
    method serves single-channel sources, whose tensors have no channel axis: ``(N, K, h, w)`` → ``(N, S, H, W)``.
    """

    min_observations: int = 1
    max_observations: int | None = None
    n_sources: int | tuple[int, ...] | None = 2
    needs_training: bool = False
    observation_shape: tuple[int, int] | None = None
    color: bool = False

    def __post_init__(self) -> None:
        shape = self.observation_shape
        if shape is not None and not (isinstance(shape, tuple) and len(shape) == 2
                                      and all(isinstance(n, int) and n > 0 for n in shape)):
            raise ValueError(f"Requirements.observation_shape must be None or (height, width), got {shape!r}")
        counts = self.n_sources
        if not (counts is None or _positive_int(counts) or isinstance(counts, tuple) and counts
                and all(_positive_int(n) for n in counts)):
            raise ValueError(f"Requirements.n_sources must be a positive int, a tuple of them or None, got {counts!r}")

    def serves_sources(self, n: int) -> bool:
        """Whether the method separates ``n`` sources."""
        counts = self.n_sources
        return counts is None or (n in counts if isinstance(counts, tuple) else n == counts)

    def sources_text(self) -> str:
        """The numbers of sources served, for people: ``2``, ``2–4``, ``2, 5`` or ``any``."""
        counts = self.n_sources
        if counts is None:
            return "any"
        if isinstance(counts, int):
            return str(counts)
        ordered = sorted(set(counts))
        if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
            return f"{ordered[0]}–{ordered[-1]}"
        return ", ".join(map(str, ordered))


#: the numbers of sources the built-in networks and baselines serve (PIT searches them exhaustively)
SERVED_SOURCES: tuple[int, ...] = (2, 3, 4)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


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
                f"method {method!r}: parameter {name!r} must be {self.type.__name__}, got {short(value)}"
            ) from None
        if self.choices is not None and value not in self.choices:
            options = ", ".join(map(str, self.choices))
            raise ParameterError(f"method {method!r}: parameter {name!r} must be one of {options}, got {short(value)}")
        if self.positive and not value > 0:
            raise ParameterError(f"method {method!r}: parameter {name!r} must be > 0, got {short(value)}")
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
    """Everything ``fit`` gets besides the data: device, seed, budget, progress and a logger.

    ``checkpoint``: a file where :func:`sepbench.methods.training.train_network` keeps its state after every epoch
    (written atomically), and from which it resumes an interrupted training when the file holds the same
    ``checkpoint_key``; None (the default): no checkpoints. A file with another key, or one that cannot be read,
    is ignored with a warning and training starts at epoch 1. The cell sets both when its run keeps checkpoints
    (the key: a hash of the cell, its provenance and precision); a method that trains without ``train_network``
    may ignore them. ``resumed_from_epoch``: set by ``train_network`` to the epoch it resumed after (None: it
    trained from the start).
    """

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    budget: TrainBudget = field(default_factory=TrainBudget)
    progress: Callable[[dict[str, Any]], None] = lambda info: None
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("sepbench.method"))
    checkpoint: Path | None = None
    checkpoint_key: str = ""
    resumed_from_epoch: int | None = None


class Method:
    """Base class of every separation method. Subclass, declare, and register with ``@register_method``.

    The engine reads from a method only what this class declares: the class attributes below, ``resolve_params``,
    ``check_params``, ``unsupported_reason``, ``fit``, ``separate``, ``n_parameters``, and after ``fit`` the
    learned state ``history_`` and ``precision_``.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[Requirements] = Requirements()
    resources: ClassVar[Resources] = Resources()
    parameters: ClassVar[dict[str, Param]] = {}
    #: True only for a method whose output for one mixture depends on the other mixtures of the batch (a flaw
    #: kept to reproduce published code): the contract then notes the measured difference instead of failing,
    #: and bf16 separation does not pad a short last chunk (padding would change the real outputs)
    batch_dependent: ClassVar[bool] = False
    #: whether precision 'auto' or 'bf16' may run the method under bf16 autocast (a network's choice; the
    #: planner's run-time estimate reads it too). Methods without a network run in their own precision.
    supports_bf16: ClassVar[bool] = False
    #: rough fp32 training throughput of one cell on one CPU thread (mixtures/s), used only to estimate run time
    cpu_mixtures_per_s: ClassVar[float] = 0.0
    #: how much faster training runs under bf16 autocast on a CPU with bf16 instructions (estimate only)
    cpu_bf16_speedup: ClassVar[float] = 1.0

    @classmethod
    def cpu_rate(cls, params: Mapping[str, Any]) -> float:
        """Rough fp32 training mixtures/s of one cell on one CPU thread with ``params`` (estimates only; at the
        calibration's reference speed): ``cpu_mixtures_per_s`` unless a method's cost depends on its parameters."""
        return cls.cpu_mixtures_per_s

    #: learned state, read by the cell after ``fit`` (scikit-learn's trailing underscore): one record per
    #: training epoch (``epoch``, ``train_loss``, ``val_loss``, ``seconds``, ``elapsed``); empty if nothing trained
    history_: Sequence[Mapping[str, float]] = ()
    #: the precision the last ``fit`` trained and separates in ('fp32' | 'bf16'); None for a method without a network
    precision_: str | None = None

    def __init__(self, task: Task, **params: Any) -> None:
        self.task = task
        self.params = self.resolve_params(params)
        self.check_params(self.params, task)
        self.device = torch.device("cpu")

    @classmethod
    def resolve_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """Validate user parameters against the declared :class:`Param` s (name, type, choices, positive) and
        fill in defaults. Raises :class:`ParameterError`."""
        unknown = sorted(set(params) - set(cls.parameters))
        if unknown:
            known = ", ".join(sorted(cls.parameters)) or "none"
            raise ParameterError(f"method {cls.name!r}: unknown parameter {short(unknown[0])} (known: {known})")
        resolved = {}
        for key, spec in cls.parameters.items():
            resolved[key] = spec.validate(cls.name, key, params[key]) if key in params else spec.default
        return resolved

    @classmethod
    def check_params(cls, params: Mapping[str, Any], task: Task) -> None:
        """The method's own parameter checks, beyond what a :class:`Param` declares: a range (``>= 0``), a relation
        between two parameters, or one with the task. ``params`` are resolved (every declared name present).

        Override it and raise :class:`ParameterError` (one line, naming the method and the parameter). It runs
        when a grid is validated, for every entry and scenario, before any cell starts, and again in ``__init__``.
        The default accepts everything.
        """

    @classmethod
    def unsupported_reason(cls, task: Task) -> str | None:
        """Why this method cannot serve ``task``, or None if it can."""
        req = cls.requires
        k = task.n_observations
        if k < req.min_observations:
            return f"needs at least {req.min_observations} observations, scenario has {k}"
        if req.max_observations is not None and k > req.max_observations:
            return f"takes at most {req.max_observations} observations, scenario has {k}"
        if not req.serves_sources(task.n_sources):
            return f"separates {req.sources_text()} sources, scenario has {task.n_sources}"
        if req.observation_shape is not None and task.observation_shape != req.observation_shape:
            (h, w), (a, b) = req.observation_shape, task.observation_shape
            return f"takes {h}×{w} observations only (its layers are sized for them), scenario has {a}×{b}"
        if task.channels > 1 and not req.color:
            return (f"takes single-channel sources only (it does not declare Requirements(color=True)), scenario "
                    f"has {task.channels} channels")
        return None

    def fit(self, data: TrainingData, ctx: FitContext) -> Method:
        """Learn from ``data``. Non-learned methods only move to ``ctx.device``."""
        self.device = ctx.device
        return self

    def separate(self, y: torch.Tensor) -> torch.Tensor:
        """Observations ``(N, K, h, w)`` → estimates ``(N, S, H, W)``; each output depends on its own input only.
        (With ``Requirements(color=True)`` and a C-channel task: ``(N, K, C, h, w)`` → ``(N, S, C, H, W)``.)"""
        raise NotImplementedError

    def n_parameters(self) -> int:
        """Number of learned parameters (0 for methods without a network)."""
        return 0

    # Kept models (``bench run --keep-models``, :mod:`sepbench.models`): the two hooks below save and restore the
    # fitted state. The engine stores it as safetensors (tensors only: nothing runs when it is loaded) beside a
    # model card that holds the task, the parameters, ``precision_`` and ``history_``. The default: cannot be kept.

    def save_state(self) -> dict[str, torch.Tensor]:
        """The fitted state after ``fit``, as named CPU tensors (empty for a method that learns nothing)."""
        raise NotImplementedError(f"method {self.name!r} cannot be kept (it does not implement save_state and "
                                  "load_state)")

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore :meth:`save_state`'s tensors into a method built for the same task and parameters, on
        ``self.device``: ``separate`` then gives what the fitted method gave."""
        raise NotImplementedError(f"method {self.name!r} cannot be kept (it does not implement save_state and "
                                  "load_state)")

    @classmethod
    def can_be_kept(cls) -> bool:
        """Whether the method implements both hooks (``bench methods`` shows it in its KEPT column)."""
        return cls.save_state is not Method.save_state and cls.load_state is not Method.load_state


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
