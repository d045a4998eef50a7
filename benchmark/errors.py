"""Errors a user can cause. The CLI prints them as one line and exits with status 2."""

import reprlib

_SHORT = reprlib.Repr()  # keyword arguments need Python 3.12
_SHORT.maxlevel, _SHORT.maxdict, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxset = 2, 3, 4, 4, 4
_SHORT.maxstring, _SHORT.maxlong, _SHORT.maxother = 40, 24, 40


def short(value: object, limit: int = 60) -> str:
    """``repr(value)`` for an error message: nested and long values cut short, never more than ``limit`` chars
    (formatting a whole YAML alias bomb would take forever)."""
    text = _SHORT.repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


class UserError(Exception):
    """Bad input from the user: a grid, a parameter, a path, a busy run directory."""


class GridError(UserError):
    """A grid file that cannot be read or does not validate."""


class ParameterError(UserError):
    """A method parameter that is unknown, of the wrong type or out of range."""


class RunLocked(UserError):
    """Another run is writing to the run directory."""
