"""Source images and the forward model that turns them into mixtures.

The dataset API (:mod:`sepbench.datasets.base`: ``Dataset``, ``SourceImages``, ``register_dataset``) and its registry
(:mod:`sepbench.datasets.registry`: ``get_dataset``, ``available_datasets``) are the public face of the task side.
"""

from collections.abc import Mapping
from typing import Any


def dataset_key(name: str, train_size: int, test_size: int, options: Mapping[str, Any] | None = None) -> str:
    """Names the source images that test sets are drawn from: equal keys, equal test mixtures (and seeds).

    A dataset's options (e.g. ``color``) are part of the key when given; without options the key is today's.
    """
    if options:
        name += "[" + ",".join(f"{k}={options[k]!r}" for k in sorted(options)) + "]"
    return f"{name}:{train_size}:{test_size}"


def dataset_key_of(spec: Mapping[str, Any]) -> str:
    """:func:`dataset_key` of a cell config's ``dataset`` entry (name, train_size, test_size, then options)."""
    options = {k: v for k, v in spec.items() if k not in ("name", "train_size", "test_size")}
    return dataset_key(spec["name"], spec["train_size"], spec["test_size"], options)
