"""The grid's ``dataset:`` keys: the default dataset at the top level and a scenario's own, checked against the
dataset registry when the grid is read (unknown names, bad options, sizes above what a dataset has: one line).

Forms, at the top level and inside a scenario::

    dataset: mnist
    dataset: {name: cifar10, train_size: 20000, test_size: 2000, color: true}   # other keys: the dataset's options

``train_size`` / ``test_size`` default to all the dataset has.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sepbench.errors import GridError, UserError, short
from sepbench.grid_model import DatasetSpec

SIZE_KEYS = ("train_size", "test_size")
Fail = Callable[[str, str], GridError]


def _ensure_registered(name: str, plugins: Sequence[str], source: str) -> None:
    """Import the grid's ``plugins:`` modules when ``name`` is not registered yet (they may register it)."""
    from sepbench.datasets.base import _DATASET_ORIGINS, _DATASETS
    from sepbench.datasets.registry import available_datasets
    from sepbench.registry import _module_origin, import_plugins

    if name in available_datasets() or not plugins:
        return
    before = set(_DATASETS)
    import_plugins(plugins, where=f"{source}: plugins")
    for new in set(_DATASETS) - before:
        _DATASET_ORIGINS[new] = _module_origin(_DATASETS[new].__module__)


def parse_dataset(fail: Fail, key: str, raw: Any, plugins: Sequence[str], source: str) -> DatasetSpec:
    """A ``dataset:`` value (a name, or a mapping of name, sizes and options) → a resolved :class:`DatasetSpec`."""
    from sepbench.datasets.registry import get_dataset

    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise fail(key, f"expected a dataset name or a mapping {{name, train_size, test_size, options…}}, "
                        f"got {short(raw)}")
    name = raw.get("name", "mnist")
    if not isinstance(name, str) or not name:
        raise fail(f"{key}.name", f"expected a dataset name, got {short(name)}")
    options = {str(k): v for k, v in raw.items() if k not in ("name", *SIZE_KEYS)}
    for option, value in options.items():
        if isinstance(value, dict | list) or value is None:
            raise fail(f"{key}.{option}", f"expected a plain value (number, string, true/false), got {short(value)}")
    _ensure_registered(name, plugins, source)
    try:
        dataset = get_dataset(name, **options)
    except UserError as exc:
        raise fail(key if "unknown dataset" in str(exc) else f"{key}.{name}", str(exc)) from None
    sizes = {}
    for size, count, split in (("train_size", dataset.train_count, "training"),
                               ("test_size", dataset.test_count, "test")):
        value = raw.get(size, count)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise fail(f"{key}.{size}", f"expected a positive integer, got {short(value)}")
        if value > count:
            raise fail(f"{key}.{size}", f"{name} has {dataset.train_count} training and {dataset.test_count} test "
                                        f"images, {value} {split} images asked for")
        sizes[size] = value
    return DatasetSpec(name, sizes["train_size"], sizes["test_size"], options, tuple(dataset.image_size),
                       int(dataset.channels), str(dataset.fingerprint), bool(dataset.labelled))


def check_downsample(fail: Fail, key: str, downsample: int, dataset: DatasetSpec) -> None:
    """``downsample`` must divide the dataset's image size: say which size, of which dataset."""
    height, width = dataset.image_size
    if height % downsample or width % downsample:
        raise fail(key, f"must divide the image size {height}×{width} of {dataset.name}, got {downsample}")
