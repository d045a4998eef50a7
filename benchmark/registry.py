"""Finding methods by name: built-ins register on import of :mod:`methods`; plugins add more.

Plugins come two ways: installed packages declare an entry point in the group ``bench.methods``
(``name = package.module:Class``), and a grid may list importable modules under ``plugins:`` that
register methods with ``@register_method`` when imported. A plugin that cannot be loaded breaks only
itself: it is recorded with its cause, every other method stays usable, and a grid that uses it gets
one clear error naming the plugin.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata as metadata
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sepbench.api import _ORIGINS, _REGISTRY, Method, Param, register_method
from sepbench.errors import UserError, short

ENTRY_POINT_GROUP = "bench.methods"


class PluginError(UserError):
    """A plugin that cannot be loaded, or a method that comes from one."""


@dataclass(frozen=True)
class BrokenPlugin:
    """An entry point that could not be registered: the method name it claims, which plugin, and why."""

    name: str
    plugin: str
    origin: str
    error: str

    def message(self) -> str:
        return f"method {self.name!r} comes from a broken plugin: {self.plugin}: {self.error}"


_BROKEN: list[BrokenPlugin] = []
_state = {"entry_points_loaded": False}


def _load_builtins() -> None:
    import sepbench.methods  # noqa: F401  (importing registers every built-in method)


def _describe_exception(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _claim_new_names(before: set[str], origin: str) -> None:
    """Methods registered since ``before`` (by a plugin's import) get the plugin as their origin."""
    for name in set(_REGISTRY) - before:
        _ORIGINS[name] = origin


def _load_entry_point(entry: metadata.EntryPoint) -> None:
    dist = getattr(entry, "dist", None)
    origin = f"{dist.name} {dist.version}" if dist is not None else "entry point"
    plugin = f"entry point '{entry.name} = {entry.value}' of {origin}"

    def broken(error: str) -> None:
        _BROKEN.append(BrokenPlugin(entry.name, plugin, origin, error))

    before = set(_REGISTRY)
    try:
        target = entry.load()
    except (Exception, SystemExit) as exc:  # a plugin's own bug must not take the registry down
        broken(f"cannot be imported: {_describe_exception(exc)}")
        return
    finally:
        _claim_new_names(before, origin)
    if not (isinstance(target, type) and issubclass(target, Method)):
        broken(f"{entry.value} is {type(target).__name__} {target!r}, not a subclass of sepbench.api.Method")
        return
    taken = _REGISTRY.get(entry.name)
    if taken is not None and taken is not target:
        broken(f"the name {entry.name!r} is already taken by {taken.__module__}.{taken.__qualname__} "
               f"({_ORIGINS.get(entry.name, 'unknown')})")
        return
    register_method(entry.name, origin=origin)(target)
    _ORIGINS[entry.name] = origin


def load_entry_points() -> None:
    """Register every method that installed packages declare in the ``bench.methods`` group (once)."""
    if _state["entry_points_loaded"]:
        return
    _state["entry_points_loaded"] = True  # set first: a plugin that looks up methods must not recurse
    _load_builtins()
    entries = metadata.entry_points(group=ENTRY_POINT_GROUP)
    by_origin = sorted(entries, key=lambda e: (getattr(getattr(e, "dist", None), "name", "") or "", e.name))
    for entry in by_origin:
        _load_entry_point(entry)


def _module_origin(module: str) -> str:
    top = module.split(".")[0]
    dists = metadata.packages_distributions().get(top, [])
    if dists:
        try:
            return f"{dists[0]} {metadata.version(dists[0])} (module {module})"
        except metadata.PackageNotFoundError:
            pass
    return f"module {module}"


def import_plugins(modules: Iterable[str], where: str = "plugins") -> None:
    """Import the plugin ``modules`` a grid lists (their ``@register_method`` calls register methods).

    Modules are looked up where Python finds them, and in the current directory. A module that fails to
    import raises one :class:`PluginError` naming it and the cause.
    """
    modules = list(modules)
    if not modules:
        return
    load_entry_points()
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    for module in modules:
        if module in sys.modules:
            continue
        before = set(_REGISTRY)
        try:
            importlib.import_module(module)
        except (Exception, SystemExit) as exc:
            raise PluginError(f"{where}: plugin {short(module)} cannot be imported: "
                              f"{_describe_exception(exc)}") from None
        finally:
            if set(_REGISTRY) - before:
                _claim_new_names(before, _module_origin(module))


def _matches(name: str, pattern: str | Sequence[str]) -> bool:
    """``name`` matches the shell-style ``pattern``, or any of several."""
    patterns = (pattern,) if isinstance(pattern, str) else tuple(pattern) or ("*",)
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def broken_plugins(pattern: str | Sequence[str] = "*") -> list[BrokenPlugin]:
    """Entry points that could not be registered (whose claimed name matches ``pattern`` or any of several)."""
    load_entry_points()
    return [b for b in _BROKEN if _matches(b.name, pattern)]


def available_methods(pattern: str | Sequence[str] = "*") -> dict[str, type[Method]]:
    """Registered methods whose name matches the shell-style ``pattern`` (or any of several), sorted by name."""
    _load_builtins()
    load_entry_points()
    return {name: _REGISTRY[name] for name in sorted(_REGISTRY) if _matches(name, pattern)}


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``; a clear error naming a broken plugin or the known ones."""
    methods = available_methods()
    if name in methods:
        return methods[name]
    for broken in _BROKEN:
        if broken.name == name:
            raise PluginError(broken.message())
    raise UserError(f"unknown method {short(name)} (known: {', '.join(methods)})")


def method_origin(name: str) -> str:
    """Where a method comes from: 'built-in', or the package (and version) that provides it."""
    return _ORIGINS.get(name, "unknown")


def _observations(cls: type[Method]) -> str:
    low, high = cls.requires.min_observations, cls.requires.max_observations
    if high is None:
        return f"≥{low}"
    return str(low) if high == low else f"{low}–{high}"


def _resources(cls: type[Method]) -> str:
    parts = [f"cpu {cls.resources.cpu:g}"] + ([f"gpu {cls.resources.gpu:g}"] if cls.resources.gpu else [])
    return ", ".join(parts)


def _parameter(key: str, spec: Param, verbose: bool) -> str:
    text = f"{key}: {spec.type.__name__} = {spec.default!r}"
    if spec.choices is not None:
        text += " {" + "|".join(map(str, spec.choices)) + "}"
    elif spec.positive:
        text += " (>0)"
    if verbose and spec.help:
        text += f"  — {spec.help}"
    return text


def methods_table(pattern: str | Sequence[str] = "*", verbose: bool = False) -> str:
    """``bench methods``: one row per method (name, origin, needs, whether it takes colour sources, whether
    ``--keep-models`` can keep it, resources, parameters), then broken plugins."""
    header = ("NAME", "ORIGIN", "OBSERVATIONS", "SOURCES", "COLOUR", "TRAINS", "KEPT", "RESOURCES", "PARAMETERS")
    rows: list[tuple[tuple[str, ...], list[str], str]] = []
    for name, cls in available_methods(pattern).items():
        req = cls.requires
        cells = (name, method_origin(name), _observations(cls), req.sources_text(), "yes" if req.color else "no",
                 "yes" if req.needs_training else "no", "yes" if cls.can_be_kept() else "cannot be kept",
                 _resources(cls))
        params = [_parameter(k, v, verbose) for k, v in cls.parameters.items()] or ["—"]
        summary = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
        rows.append((cells, params, summary))
    widths = [max([len(header[i])] + [len(r[0][i]) for r in rows]) for i in range(len(header) - 1)]
    indent = sum(w + 2 for w in widths)
    lines = ["  ".join(h.ljust(w) for h, w in zip(header[:-1], widths, strict=True)) + "  " + header[-1]]
    for cells, params, doc in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + "  " + params[0])
        lines += [" " * indent + p for p in params[1:]]
        if verbose and doc:
            lines.append(f"  {doc}")
    broken = broken_plugins(pattern)
    if broken:
        lines += ["", "broken plugins (every other method works; fix or uninstall these):"]
        lines += [f"  {b.name}  ({b.origin}): {b.plugin}: {b.error}" for b in broken]
    return "\n".join(lines)
