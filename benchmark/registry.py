"""Finding methods by name: built-ins register on import of :mod:`methods`; plugins add more."""

from __future__ import annotations

import fnmatch

from benchmark.api import _ORIGINS, _REGISTRY, Method
from benchmark.errors import UserError


def _load_builtins() -> None:
    import methods  # noqa: F401  (importing registers every built-in method)


def available_methods(pattern: str = "*") -> dict[str, type[Method]]:
    """Registered methods whose name matches the shell-style ``pattern``, sorted by name."""
    _load_builtins()
    return {name: _REGISTRY[name] for name in sorted(_REGISTRY) if fnmatch.fnmatch(name, pattern)}


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``; a clear error listing the known ones otherwise."""
    methods = available_methods()
    if name not in methods:
        raise UserError(f"unknown method {name!r} (known: {', '.join(methods)})")
    return methods[name]


def method_origin(name: str) -> str:
    """Where a method comes from: 'built-in', or the package (and version) that provides it."""
    return _ORIGINS.get(name, "unknown")
