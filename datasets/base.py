"""The dataset API: what a source-image set gives the benchmark, and the registry that finds sets by name.

A dataset is a :class:`Dataset` subclass registered with ``@register_dataset("name")`` (built-ins on import of
:mod:`sepbench.datasets.builtins`; plugins through the entry-point group ``bench.datasets``). Its
:meth:`Dataset.load` returns :class:`SourceImages`: train and test images as float32 tensors in [0, 1] of shape
``(N, C, H, W)``, labels where the set has them. Loading never unpickles a data file: every file is verified by
SHA-256 before it is parsed, and caches are written atomically (:func:`sepbench.files.atomic_output`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

ENTRY_POINT_GROUP = "bench.datasets"


class DatasetNotFound(Exception):
    """A dataset's files are nowhere to be found (and cannot be downloaded); the message says what to put where."""


class ChecksumError(Exception):
    """A file (downloaded, found in the data directory, or shipped by a package) has the wrong checksum."""


@dataclass(frozen=True)
class SourceImages:
    """Source images in [0, 1]: ``train``/``test`` float32 ``(N, C, H, W)``, labels int64 ``(N,)`` or None."""

    name: str
    train: torch.Tensor
    train_labels: torch.Tensor | None
    test: torch.Tensor
    test_labels: torch.Tensor | None
    origin: str  # where the files came from (a path, a package and its version, a download address)
    fingerprint: str = ""  # a hash of the content's checksums: equal fingerprints, equal images and labels

    @property
    def channels(self) -> int:
        return int(self.train.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return (int(self.train.shape[2]), int(self.train.shape[3]))


def fingerprint_of(checksums: Mapping[str, str] | list[str]) -> str:
    """A short fingerprint of a dataset's content checksums (in the order given)."""
    values = list(checksums.values()) if isinstance(checksums, Mapping) else list(checksums)
    return hashlib.sha256("|".join(values).encode()).hexdigest()[:16]


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class Dataset:
    """A set of source images. Subclasses set the class attributes and implement :meth:`load`.

    ``options`` are the grid's per-dataset options (e.g. ``color: true`` for CIFAR-10, ``patch: 32`` for
    natural-patches); a subclass declares the ones it takes in ``options_help`` and validates them in
    ``__init__`` (a bad one raises :class:`sepbench.errors.UserError` with one line).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    image_size: tuple[int, int] = (0, 0)  # (H, W), set by each subclass; may depend on options (set in __init__)
    channels: int = 1  # may depend on options
    train_count: int = 0
    test_count: int = 0
    labelled: bool = True
    options_help: ClassVar[dict[str, str]] = {}
    #: the content's fingerprint when it is known before loading (a hash of the files' published checksums and the
    #: options; the loaded SourceImages.fingerprint must then equal it); "" when it is known only once loaded. It is
    #: part of every cell's id: cells on other data never pass for each other
    fingerprint: str = ""

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.options_help))
        if unknown:
            from sepbench.errors import UserError

            known = ", ".join(sorted(self.options_help)) or "none"
            raise UserError(f"dataset {self.name!r}: unknown option(s) {', '.join(unknown)} (it takes: {known})")
        self.options = dict(options)

    def source(self) -> str:
        """Where the files come from, in one line (for ``bench datasets``)."""
        return ""

    def present(self, data_dir: Path) -> bool:
        """Whether the files can be had here without a network (in ``data_dir`` or shipped by a package)."""
        raise NotImplementedError

    def missing_message(self, data_dir: Path) -> str:
        """One line: which files to put where when they are missing and cannot be downloaded."""
        return f"{self.name}: files not found in {data_dir}"

    def load(self, data_dir: Path, *, download: bool = True) -> SourceImages:
        """The images, verified. Raises :class:`DatasetNotFound` or :class:`ChecksumError`."""
        raise NotImplementedError


_DATASETS: dict[str, type[Dataset]] = {}
_DATASET_ORIGINS: dict[str, str] = {}


def register_dataset(name: str, *, origin: str = "built-in") -> Callable[[type[Dataset]], type[Dataset]]:
    """Class decorator: make a :class:`Dataset` available to grids under ``name``."""

    def decorate(cls: type[Dataset]) -> type[Dataset]:
        if not (isinstance(cls, type) and issubclass(cls, Dataset)):
            raise TypeError(f"@register_dataset({name!r}) needs a Dataset subclass, got {cls!r}")
        if name in _DATASETS and _DATASETS[name] is not cls:
            raise ValueError(f"dataset name {name!r} is already taken by {_DATASETS[name].__module__}")
        cls.name = name
        _DATASETS[name] = cls
        _DATASET_ORIGINS.setdefault(name, origin)
        return cls

    return decorate
