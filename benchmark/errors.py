"""Errors a user can cause. The CLI prints them as one line and exits with status 2."""


class UserError(Exception):
    """Bad input from the user: a grid, a parameter, a path, a busy run directory."""


class GridError(UserError):
    """A grid file that cannot be read or does not validate."""


class ParameterError(UserError):
    """A method parameter that is unknown, of the wrong type or out of range."""


class RunLocked(UserError):
    """Another run is writing to the run directory."""
