"""Fixtures shared by the engine's tests."""

from __future__ import annotations

import pytest

from sepbench import api, registry


@pytest.fixture
def clean_registry(monkeypatch):
    """A private copy of the registry and plugin state, restored afterwards; entry points loaded afresh."""
    registry._load_builtins()  # built-ins register on first import: into the real registry, not the copy
    monkeypatch.setattr(api, "_REGISTRY", dict(api._REGISTRY))
    monkeypatch.setattr(api, "_ORIGINS", dict(api._ORIGINS))
    for name, value in (("_REGISTRY", api._REGISTRY), ("_ORIGINS", api._ORIGINS), ("_BROKEN", []),
                        ("_state", {"entry_points_loaded": False})):
        monkeypatch.setattr(registry, name, value)
