"""Finding datasets by name, the way :mod:`sepbench.registry` finds methods.

Built-ins register on import of :mod:`sepbench.datasets.builtins`; installed packages add more through an entry
point in the group ``bench.datasets`` (``name = package.module:Class``, a :class:`Dataset` subclass); a grid's
``plugins:`` modules may register more with ``@register_dataset``. A plugin that cannot be loaded breaks only
itself: it is recorded with its cause and listed by ``bench datasets``; a grid that names it gets one line.
"""

from __future__ import annotations

import importlib.metadata as metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sepbench.datasets.base import _DATASET_ORIGINS, _DATASETS, ENTRY_POINT_GROUP, Dataset, register_dataset
from sepbench.errors import UserError, short


@dataclass(frozen=True)
class BrokenDataset:
    """An entry point in ``bench.datasets`` that could not be registered: the name it claims, which plugin, why."""

    name: str
    plugin: str
    origin: str
    error: str

    def message(self) -> str:
        return f"dataset {self.name!r} comes from a broken plugin: {self.plugin}: {self.error}"


_BROKEN: list[BrokenDataset] = []
_state = {"entry_points_loaded": False}


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _load_entry_point(entry: metadata.EntryPoint) -> None:
    dist = getattr(entry, "dist", None)
    origin = f"{dist.name} {dist.version}" if dist is not None else "entry point"
    plugin = f"entry point '{entry.name} = {entry.value}' of {origin}"
    before = set(_DATASETS)
    try:
        target = entry.load()
    except (Exception, SystemExit) as exc:  # a plugin's own bug must not take the registry down
        _BROKEN.append(BrokenDataset(entry.name, plugin, origin, f"cannot be imported: {_describe(exc)}"))
        return
    finally:
        for name in set(_DATASETS) - before:  # registered by the import itself (@register_dataset)
            _DATASET_ORIGINS[name] = origin
    if not (isinstance(target, type) and issubclass(target, Dataset)):
        _BROKEN.append(BrokenDataset(entry.name, plugin, origin, f"{entry.value} is {type(target).__name__} "
                                     f"{target!r}, not a subclass of sepbench.datasets.base.Dataset"))
        return
    taken = _DATASETS.get(entry.name)
    if taken is not None and taken is not target:
        _BROKEN.append(BrokenDataset(entry.name, plugin, origin, f"the name {entry.name!r} is already taken by "
                                     f"{taken.__module__}.{taken.__qualname__}"))
        return
    register_dataset(entry.name, origin=origin)(target)
    _DATASET_ORIGINS[entry.name] = origin


def load_datasets() -> None:
    """Register the built-in datasets and, once, every one that installed packages declare in ``bench.datasets``."""
    import sepbench.datasets.builtins  # noqa: F401  (importing registers every built-in dataset)

    if _state["entry_points_loaded"]:
        return
    _state["entry_points_loaded"] = True
    entries = metadata.entry_points(group=ENTRY_POINT_GROUP)
    for entry in sorted(entries, key=lambda e: (getattr(getattr(e, "dist", None), "name", "") or "", e.name)):
        _load_entry_point(entry)


def available_datasets() -> dict[str, type[Dataset]]:
    """Every registered dataset class, by name (sorted)."""
    load_datasets()
    return {name: _DATASETS[name] for name in sorted(_DATASETS)}


def broken_datasets() -> list[BrokenDataset]:
    """Entry points of ``bench.datasets`` that could not be registered."""
    load_datasets()
    return list(_BROKEN)


def dataset_origin(name: str) -> str:
    """Where a dataset comes from: 'built-in', or the package (and version) that provides it."""
    return _DATASET_ORIGINS.get(name, "unknown")


def dataset_class(name: str) -> type[Dataset]:
    """The class registered as ``name``; one line naming a broken plugin, or the known datasets."""
    known = available_datasets()
    if name in known:
        return known[name]
    for broken in _BROKEN:
        if broken.name == name:
            raise UserError(broken.message())
    raise UserError(f"unknown dataset {short(name)} (known: {', '.join(known)})")


def get_dataset(name: str, **options: Any) -> Dataset:
    """The dataset ``name`` with the grid's ``options`` (validated by the dataset: a bad one is one line)."""
    return dataset_class(name)(**options)


def default_data_dir() -> Path:
    """``$BENCH_DATA`` if set, else ``~/.cache/sepbench`` (where every dataset's files are or go)."""
    from sepbench.datasets.mnist import default_data_dir as data_dir

    return data_dir()
