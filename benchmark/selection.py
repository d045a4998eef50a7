"""``bench run --only``: run a chosen part of a grid now and leave the rest for a later run.

A selection is a list of ``KEY=VALUE[,VALUE…]`` terms, with KEY one of ``method`` (an entry's label or its method's
registry name), ``scenario``, ``sigma`` and ``seed``. A cell is selected when it matches every term, and a term when
the cell's value is one of the term's values; several terms with the same key are one term (their values joined).
Every value must name something of the grid, so that a typo is an error, not an empty run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sepbench.errors import UserError
from sepbench.plan import Cell

KEYS = ("method", "scenario", "sigma", "seed")


@dataclass(frozen=True)
class Selection:
    """The terms of ``--only``, per key; an empty selection takes every cell."""

    terms: dict[str, tuple[str | float | int, ...]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.terms)

    def matches(self, cell: Cell) -> bool:
        for key, values in self.terms.items():
            if key == "method" and cell.label not in values and cell.method not in values:
                return False
            if key == "scenario" and cell.scenario.name not in values:
                return False
            if key == "sigma" and not any(math.isclose(cell.sigma, v, rel_tol=0, abs_tol=1e-12) for v in values):
                return False
            if key == "seed" and cell.seed not in values:
                return False
        return True

    def describe(self) -> list[str]:
        """The terms as ``--only`` spells them, for the manifest and the progress lines."""
        return [f"{key}={','.join(f'{v:g}' if isinstance(v, float) else str(v) for v in values)}"
                for key, values in self.terms.items()]


def parse_selection(texts: Iterable[str], cells: Sequence[Cell]) -> Selection:
    """The selection ``texts`` (each ``KEY=VALUE[,VALUE…]``) says, checked against the grid's ``cells``; a
    :class:`~sepbench.errors.UserError` (one line) for a term that is malformed or names nothing of the grid."""
    known = {"method": sorted({c.label for c in cells} | {c.method for c in cells}),
             "scenario": sorted({c.scenario.name for c in cells}),
             "sigma": sorted({c.sigma for c in cells}), "seed": sorted({c.seed for c in cells})}
    terms: dict[str, list[str | float | int]] = {}
    for text in texts:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or key not in KEYS:
            raise UserError(f"--only {text!r}: expected KEY=VALUE[,VALUE...] with KEY one of {', '.join(KEYS)}")
        values = [v.strip() for v in raw.split(",")]
        if not all(values):
            raise UserError(f"--only {text!r}: an empty value")
        for value in values:
            terms.setdefault(key, []).append(_value(text, key, value, known[key]))
    return Selection({key: tuple(dict.fromkeys(values)) for key, values in terms.items()})


def _value(text: str, key: str, value: str, known: list) -> str | float | int:
    shown = ", ".join(f"{k:g}" if isinstance(k, float) else str(k) for k in known)
    if key in ("method", "scenario"):
        if value not in known:
            raise UserError(f"--only {text!r}: no {key} {value!r} in this grid (it has {shown})")
        return value
    try:
        number: float | int = float(value) if key == "sigma" else int(value)
    except ValueError:
        raise UserError(f"--only {text!r}: {value!r} is not a{' number' if key == 'sigma' else ' whole number'}") \
            from None
    if key == "sigma" and not any(math.isclose(number, k, rel_tol=0, abs_tol=1e-12) for k in known):
        raise UserError(f"--only {text!r}: no sigma {value} in this grid (it has {shown})")
    if key == "seed" and number not in known:
        raise UserError(f"--only {text!r}: no seed {value} in this grid (it has {shown})")
    return number
