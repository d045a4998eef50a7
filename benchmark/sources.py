"""Source images for cells: each dataset a grid names, loaded by name and options once per process, and the
plan's cells whose dataset cannot be had here set aside before any work (one line per dataset).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sepbench.datasets.base import ChecksumError, DatasetNotFound, SourceImages
from sepbench.errors import UserError
from sepbench.grid_model import DatasetSpec

_SOURCES: dict[tuple[str, str], SourceImages] = {}
MNIST = DatasetSpec("mnist")


def _data_dir(data_dir: str | Path | None) -> Path:
    from sepbench.datasets.registry import default_data_dir

    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


def _cache_key(data_dir: str | Path | None, dataset: DatasetSpec) -> tuple[str, str]:
    return str(data_dir), dataset.key.split(":", 1)[0]  # the name and options: sizes only slice the images


def load_sources(data_dir: str | Path | None = None, dataset: DatasetSpec | None = None) -> SourceImages:
    """The images of ``dataset`` (default MNIST), loaded once per process; raises DatasetNotFound/ChecksumError."""
    from sepbench.datasets.registry import get_dataset

    dataset = dataset or MNIST
    key = _cache_key(data_dir, dataset)
    if key not in _SOURCES:
        images = get_dataset(dataset.name, **dataset.options).load(_data_dir(data_dir))
        _check(images, dataset)
        _SOURCES[key] = images
    return _SOURCES[key]


def _check(images: SourceImages, dataset: DatasetSpec) -> None:
    """The loaded images are what the dataset declared (shape, channels, range of sizes): else a plugin's bug."""
    declared = (dataset.channels, *dataset.image_size)
    for split, tensor in (("train", images.train), ("test", images.test)):
        if tensor.dim() != 4 or (dataset.image_size != (0, 0) and tuple(tensor.shape[1:]) != declared):
            raise ValueError(f"dataset {dataset.name}: {split} images have shape {tuple(tensor.shape)}, expected "
                             f"(N, {', '.join(map(str, declared))})")
    if len(images.train) < dataset.train_size or len(images.test) < dataset.test_size:
        raise ValueError(f"dataset {dataset.name}: {len(images.train)} training and {len(images.test)} test images "
                         f"loaded, the grid asks for {dataset.train_size} and {dataset.test_size}")


@dataclass(frozen=True)
class MissingDataset:
    """A dataset whose files are not here and could not be downloaded: its cells and what to do."""

    name: str
    cells: int
    message: str


def set_aside_missing(plan: Any, data_dir: str | Path | None) -> tuple[Any, list[MissingDataset]]:
    """``plan`` without the cells of datasets that cannot be had here (their files missing, no download), and one
    :class:`MissingDataset` per such dataset. A corrupt or foreign file is bad input (one line, exit 2), and so is a
    plan none of whose cells can run."""
    from sepbench.datasets.registry import get_dataset

    specs = {spec.key: spec for cell in plan.cells for spec in cell.datasets}  # with each source's own set
    missing: dict[str, MissingDataset] = {}
    for key, spec in specs.items():
        try:
            load_sources(data_dir, spec)
        except DatasetNotFound as exc:
            message = get_dataset(spec.name, **spec.options).missing_message(_data_dir(data_dir))
            first = str(exc).splitlines()[0] if str(exc) else ""
            count = sum(any(spec.key == key for spec in cell.datasets) for cell in plan.cells)
            missing[key] = MissingDataset(spec.name, count, message or first)
        except (ChecksumError, ValueError) as exc:  # corrupt, unverified or mis-shaped data
            raise UserError(str(exc).splitlines()[0]) from None
    if not missing:
        return plan, []
    kept = tuple(cell for cell in plan.cells if not any(spec.key in missing for spec in cell.datasets))
    if not kept:
        raise UserError("no cell of the grid can run: " + "; ".join(m.message for m in missing.values()))
    return replace(plan, cells=kept), list(missing.values())
