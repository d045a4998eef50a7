"""``bench verify RUN``: rerun a sample of a run's finished cells elsewhere and hold each metric to the committed one.

Public face: :func:`verify_run` (what the command does, returning its exit status), :data:`TOLERANCES` (the one
table of how far a rerun may move, by kind of cell) and :func:`parse_tolerances` (``--tolerance metric=value``).
"""

from sepbench.verify.command import verify_run
from sepbench.verify.tolerance import TOLERANCES, parse_tolerances

__all__ = ["TOLERANCES", "parse_tolerances", "verify_run"]
