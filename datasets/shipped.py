"""Data files that an installed Python package ships, found by name in the distributions' file lists.

No package name is guessed and nothing is imported: every installed distribution's RECORD is read
(:func:`importlib.metadata.distributions`) for files with the wanted names, and the caller verifies each candidate's
checksum before it is used.
"""

from __future__ import annotations

import functools
import importlib.metadata
import sys
from collections.abc import Iterable
from pathlib import Path


def shipped_files(names: Iterable[str]) -> dict[str, list[tuple[Path, str]]]:
    """For each wanted file name, the existing files of that name that installed distributions list, with
    ``"<distribution> <version>"`` for each (in the order the distributions are found)."""
    found = _scan(frozenset(names), tuple(sys.path))  # a scan reads every RECORD (~0.5 s): once per process
    return {name: [(path, label) for path, label in entries if path.is_file()] for name, entries in found.items()}


@functools.lru_cache(maxsize=16)
def _scan(wanted: frozenset[str], search_path: tuple[str, ...]) -> dict[str, list[tuple[Path, str]]]:
    """The scan behind :func:`shipped_files`, per set of names and ``sys.path``."""
    found: dict[str, list[tuple[Path, str]]] = {name: [] for name in wanted}
    for dist in importlib.metadata.distributions():
        try:
            files = dist.files or []
        except (OSError, ValueError):  # a damaged RECORD: that distribution ships nothing we can trust
            continue
        for entry in files:
            if entry.name not in wanted:
                continue
            path = Path(str(entry.locate()))
            if path.is_file():
                label = f"{dist.metadata.get('Name', '?')} {dist.version}"
                found[entry.name].append((path, label))
    return found
