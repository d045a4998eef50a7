"""sepbench: a benchmark suite for image source separation.

The public API a plugin needs comes from this one import::

    from sepbench import Method, Param, Requirements, Resources, Task, register_method

Names are resolved on first use (PEP 562), so ``import sepbench`` and ``bench --help`` stay cheap: torch is
imported only when a name that needs it is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module (inside sepbench) that defines it
_EXPORTS = {
    "Method": "sepbench.api",
    "Param": "sepbench.api",
    "Requirements": "sepbench.api",
    "Resources": "sepbench.api",
    "Task": "sepbench.datasets.task",
    "FitContext": "sepbench.api",
    "TrainBudget": "sepbench.api",
    "register_method": "sepbench.api",
    "UserError": "sepbench.errors",
    "ParameterError": "sepbench.errors",
    "TrainingData": "sepbench.datasets.mixtures",
    "Batch": "sepbench.datasets.mixtures",
    "TorchMethod": "sepbench.methods.torch_method",
    "superimpose": "sepbench.datasets.forward",
    "downsample": "sepbench.datasets.forward",
    "downsample_adjoint": "sepbench.datasets.forward",
    "upsample": "sepbench.datasets.forward",
    "load_model": "sepbench.models.load",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sepbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    # ruff: noqa: F401
    from sepbench.api import FitContext, Method, Param, Requirements, Resources, TrainBudget, register_method
    from sepbench.datasets.forward import downsample, downsample_adjoint, superimpose, upsample
    from sepbench.datasets.mixtures import Batch, TrainingData
    from sepbench.datasets.task import Task
    from sepbench.errors import ParameterError, UserError
    from sepbench.methods.torch_method import TorchMethod
    from sepbench.models.load import load_model
