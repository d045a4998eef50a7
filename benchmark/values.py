"""Value coercion shared by grid files and method parameters: one rule for what counts as a number."""

from __future__ import annotations

from typing import Any

from sepbench.errors import short


def coerce(value: Any, kind: type) -> Any:
    """``value`` as an instance of ``kind``, or a TypeError saying what was expected.

    An int is accepted where a float is expected (and becomes one); a bool is never a number (YAML's ``true``
    is not 1); anything else must already be of ``kind``.
    """
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise TypeError(f"expected {kind.__name__}, got {short(value)}")
    return value
