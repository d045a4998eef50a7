"""What produced a cell: a fingerprint of the method's code, versions, the data, the device kind.

A cell's record carries :func:`provenance`; a rerun compares it with what would produce the cell now
(:func:`changes`) and does not serve a cell whose producer changed. What the code fingerprint covers:

* a built-in method: its module, the modules of its base classes (``TorchMethod``'s training modules) and
  every ``sepbench.methods`` / ``sepbench.datasets`` module these reach through their module-level imports;
* a plugin: every ``.py`` file of its top-level package (or its single module file), plus the same closure
  over the sepbench modules it builds on; and its distribution's version when it is installed as one.

A file counts by its code, not its text (:func:`source_digest`): comments, docstrings and formatting can change
without making a cell stale; any change to what runs does.

The rest of the engine (cell runner, metrics, store) is covered by sepbench's version.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

SHARED_SCOPES = ("sepbench.methods", "sepbench.datasets")  # sepbench modules a method's code may build on
COMPARED = ("code", "method_version", "sepbench", "torch", "device")  # data is part of the cell id instead
_CACHE: dict[type, tuple[str, tuple[str, ...]]] = {}


def _in_scope(name: str, scopes: tuple[str, ...]) -> bool:
    return any(name == s or name.startswith(s + ".") for s in scopes) and name not in SHARED_SCOPES


def _module_closure(roots: list[str], scopes: tuple[str, ...]) -> set[str]:
    """Modules in ``scopes`` reachable from ``roots`` through module-level names (imports, classes, functions).

    The packages ``sepbench.methods`` / ``sepbench.datasets`` themselves are left out: their ``__init__`` imports
    every built-in, and one method's fingerprint must not change when another method does.
    """
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen or not _in_scope(name, scopes) or name not in sys.modules:
            continue
        seen.add(name)
        for value in list(vars(sys.modules[name]).values()):
            if isinstance(value, ModuleType):
                stack.append(value.__name__)
            elif isinstance(value, type) or callable(value):
                module = getattr(value, "__module__", None)
                if isinstance(module, str):
                    stack.append(module)
    return seen


def _package_files(module_name: str) -> list[tuple[str, Path]]:
    """(module name, path) of every ``.py`` file of the top-level package of ``module_name`` (or its own file)."""
    top = sys.modules.get(module_name.partition(".")[0])
    if top is None or not getattr(top, "__file__", None):
        return []
    paths = getattr(top, "__path__", None)
    if not paths:
        return [(top.__name__, Path(top.__file__))]
    files = []
    for root in map(Path, paths):
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" not in path.parts:
                parts = [top.__name__, *path.relative_to(root).with_suffix("").parts]
                files.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return files


def code_files(cls: type) -> list[tuple[str, Path]]:
    """(name, path) of every source file the code fingerprint of ``cls`` covers, sorted by name."""
    bases = [c.__module__ for c in cls.__mro__ if c.__module__ not in ("builtins", "abc")]
    builtin = cls.__module__.startswith("sepbench.")
    scopes = SHARED_SCOPES if builtin else (*SHARED_SCOPES, cls.__module__.partition(".")[0])
    files = {name: Path(sys.modules[name].__file__) for name in _module_closure(bases, scopes)
             if getattr(sys.modules[name], "__file__", None)}
    if not builtin:
        files.update(dict(_package_files(cls.__module__)))
    return sorted(files.items())


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    """``tree`` without the docstrings of its module, classes and functions (they do not change what runs)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and \
                    isinstance(first.value.value, str):
                node.body = node.body[1:]
    return tree


def source_digest(source: bytes) -> bytes:
    """SHA-256 of a Python file's syntax tree without docstrings, line numbers or comments: edits to those and to
    formatting keep it, any change to the code changes it. A file that does not parse counts by its bytes."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return hashlib.sha256(b"bytes\0" + source).digest()
    dump = ast.dump(_strip_docstrings(tree), include_attributes=False)
    return hashlib.sha256(b"ast\0" + dump.encode()).digest()


def code_fingerprint(cls: type) -> tuple[str, tuple[str, ...]]:
    """A short hash of the code of :func:`code_files` (not their paths: a copy elsewhere is the same code)."""
    if cls not in _CACHE:
        digest = hashlib.sha256()
        names = []
        for name, path in code_files(cls):
            digest.update(name.encode() + b"\0" + source_digest(path.read_bytes()))
            names.append(name)
        _CACHE[cls] = (digest.hexdigest()[:16], tuple(names))
    return _CACHE[cls]


@functools.cache
def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def _distributions() -> dict[str, list[str]]:
    """Top-level import name → distributions (reading every installed package's metadata takes ~0.5 s: once)."""
    return importlib.metadata.packages_distributions()


def read_installed() -> None:
    """Read the installed distributions' metadata now, in a worker's start-up, rather than in its first cell."""
    _distributions()


def method_version(cls: type) -> str | None:
    """The version of the distribution that provides ``cls`` (sepbench's for built-ins); None if not installed."""
    distributions = _distributions().get(cls.__module__.partition(".")[0], [])
    return _version(distributions[0]) if distributions else None


def provenance(cls: type, data: str, device: str | None) -> dict[str, Any]:
    """Everything besides the configuration that produced (or would produce) a cell of method ``cls``."""
    import torch  # where a cell runs, torch is loaded anyway

    code, files = code_fingerprint(cls)
    return {"code": code, "code_files": list(files), "method_version": method_version(cls),
            "sepbench": _version("sepbench"), "torch": torch.__version__, "data": data, "device": device}


def changes(recorded: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """Why a recorded cell is stale against ``current`` (empty: still current). A device of None is not compared."""
    if not recorded:
        return ["recorded without provenance (an older sepbench)"]
    found = []
    for key in COMPARED:
        if key == "device" and current.get(key) is None:
            continue
        if recorded.get(key) != current.get(key):
            label = "method code" if key == "code" else key.replace("_", " ")
            found.append(f"{label} {recorded.get(key)} → {current.get(key)}")
    return found
