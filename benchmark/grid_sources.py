"""A scenario's ``sources:`` key: one dataset per source, so that each source of a mixture comes from its own set.

    scenarios:
      digit+item: {weights: [[1, 1]], downsample: 2, sources: [mnist, fashion-mnist]}
      digit+patch: {weights: [[1, 1]], sources: [mnist, {name: natural-patches, patch: 28}]}

Each entry takes the forms of ``dataset:`` (:mod:`sepbench.grid_datasets`); S, the number of entries, must equal the
weights' columns, and every set must have the same image size and channels. The roles are then distinct: output s
is meant for source s, and the scorer adds the fixed-order score to the best-assignment one (docs/datasets.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sepbench.grid_datasets import parse_dataset
from sepbench.grid_model import DatasetSpec


def parse_sources(check: Any, key: str, spec: dict[str, Any], n_sources: int,
                  plugins: Sequence[str]) -> tuple[DatasetSpec, ...] | None:
    """The datasets of ``spec``'s ``sources`` key (``check``: the grid's checker), or None without one."""
    if "sources" not in spec:
        return None
    if "dataset" in spec:
        raise check.fail(key, "give either 'dataset' (every source from one set) or 'sources' (one set per source), "
                              "not both")
    raw = check.sequence(f"{key}.sources", spec["sources"])
    if len(raw) != n_sources:
        raise check.fail(f"{key}.sources", f"{len(raw)} dataset(s) for {n_sources} source(s): name one dataset per "
                                           "column of the weights")
    sets = tuple(parse_dataset(check.fail, f"{key}.sources[{i}]", item, plugins, check.source)
                 for i, item in enumerate(raw))
    shapes = {(s.image_size, s.channels) for s in sets}
    if len(shapes) > 1:
        sizes = ", ".join(f"{s.name} {s.image_size[0]}×{s.image_size[1]}×{s.channels}" for s in sets)
        raise check.fail(f"{key}.sources", f"sources of different sizes in one scenario ({sizes}; height×width×"
                                           "channels must agree)")
    return sets
