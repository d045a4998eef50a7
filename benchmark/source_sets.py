"""The source images of one cell: its dataset's, or, for a scenario with ``sources:``, each source's own set.

Sets of one scenario are laid end to end in one tensor, and each source's range in it (offset, count) tells the
mixture draw (:func:`sepbench.datasets.mixtures.draw_from_sets`) where source s comes from; a set named twice is
held once. The test images are the first ``test_size`` of each set, the training images the first ``train_size``;
the laid-out training tensor is new memory, so it is the cell's own copy as :func:`training_images` gives one
for a single set. A single dataset takes exactly today's path (same test mixtures, same training images).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from sepbench.cell_guards import training_images
from sepbench.datasets.base import SourceImages
from sepbench.datasets.mixtures import SetRanges
from sepbench.grid_model import DatasetSpec
from sepbench.sources import load_sources


def joint_key(specs: tuple[DatasetSpec, ...]) -> str:
    """Names the test images of one set per source (seeds the fixed test mixtures): the sets' keys joined by ``+``."""
    return "+".join(spec.key for spec in specs)


@dataclass(frozen=True)
class CellImages:
    """What a cell draws its mixtures from: test images, the training images' parts, the per-source ranges."""

    first: SourceImages  # the first (or only) set, as loaded
    test: torch.Tensor  # (N_test, C, H, W): the test images, sets end to end
    train_parts: tuple[torch.Tensor, ...]  # each distinct set's training images (shared: never handed out)
    key: str  # seeds the fixed test mixtures
    fingerprint: str  # of every set, joined by "+"
    test_sets: SetRanges | None  # per source, its range in ``test``; None: one set for every source
    train_sets: SetRanges | None

    @property
    def distinct(self) -> bool:
        """Whether each source has its own set (so that output s is meant for source s)."""
        return self.test_sets is not None

    def training(self, device: torch.device) -> torch.Tensor:
        """The cell's own copy of its training images on ``device`` (the sets end to end)."""
        if len(self.train_parts) == 1:
            return training_images(self.train_parts[0], len(self.train_parts[0]), device)
        return torch.cat(self.train_parts).to(device)  # torch.cat: new memory, the cell's own


def _ranges(counts: list[int], which: list[int]) -> SetRanges:
    offsets = [sum(counts[:i]) for i in range(len(counts))]
    return tuple((offsets[i], counts[i]) for i in which)


def cell_images(data_dir: str | Path | None, dataset: DatasetSpec,
                sources: tuple[DatasetSpec, ...] | None = None) -> CellImages:
    """The images of a cell on ``dataset``, or with one set per source (``sources``, the scenario's)."""
    if not sources:
        images = load_sources(data_dir, dataset)
        return CellImages(images, images.test[:dataset.test_size], (images.train[:dataset.train_size],),
                          dataset.key, images.fingerprint, None, None)
    distinct = list(dict.fromkeys(spec.key for spec in sources))
    specs = {spec.key: spec for spec in sources}
    loaded = {key: load_sources(data_dir, specs[key]) for key in distinct}
    which = [distinct.index(spec.key) for spec in sources]
    test = [loaded[key].test[:specs[key].test_size] for key in distinct]
    train = tuple(loaded[key].train[:specs[key].train_size] for key in distinct)
    return CellImages(loaded[sources[0].key], torch.cat(test), train, joint_key(sources),
                      "+".join(loaded[spec.key].fingerprint for spec in sources),
                      _ranges([len(t) for t in test], which), _ranges([len(t) for t in train], which))
