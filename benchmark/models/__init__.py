"""Kept models: a trained cell's fitted method stored in its run directory and used again.

``bench run --keep-models`` (or ``train: {keep_model: true}``) writes ``models/<cell>.safetensors`` (tensors only:
nothing runs when it is loaded) and its model card ``models/<cell>.json`` (:mod:`.card`, :mod:`.files`);
:func:`load_model` rebuilds the fitted method from them (:mod:`.load`); ``bench separate`` and ``bench mix``
(:mod:`.commands`, :mod:`.images`) use it on a user's own data. Names resolve on first use (the store imports
:mod:`.files` while :mod:`.load` imports the store).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "KeptModel": "sepbench.models.card",
    "kept_model": "sepbench.models.card",
    "model_paths": "sepbench.models.files",
    "model_problem": "sepbench.models.files",
    "read_kept": "sepbench.models.files",
    "write_model": "sepbench.models.files",
    "load_model": "sepbench.models.load",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sepbench.models' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
