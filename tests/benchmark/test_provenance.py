"""The code fingerprint counts what runs: comments, docstrings and layout do not change it, any code edit does."""

from __future__ import annotations

import pytest

from sepbench.provenance import source_digest

BASE = b'''"""A module."""
import math

RATE = 0.5  # per step


class Model:
    """A model."""

    def step(self, x, n=2):
        """One step."""
        return math.sqrt(x) * RATE + n
'''


@pytest.mark.parametrize("edited", [
    BASE.replace(b"# per step", b"# per step, as measured"),  # a comment
    BASE.replace(b'"""A model."""', b'"""A model, documented at length."""'),  # a class docstring
    BASE.replace(b'"""A module."""\n', b""),  # the module docstring removed
    BASE.replace(b'        """One step."""\n', b""),  # a method's docstring removed
    BASE.replace(b"math.sqrt(x) * RATE + n", b"(math.sqrt(x)*RATE\n                + n)"),  # layout
    BASE + b"\n\n# the end\n",  # blank lines and a trailing comment
], ids=["comment", "class-docstring", "module-docstring", "method-docstring", "layout", "trailing"])
def test_what_does_not_run_keeps_the_digest(edited):
    assert edited != BASE
    assert source_digest(edited) == source_digest(BASE)


@pytest.mark.parametrize("edited", [
    BASE.replace(b"RATE = 0.5", b"RATE = 0.6"),  # a constant
    BASE.replace(b"* RATE", b"/ RATE"),  # an operator
    BASE.replace(b"n=2", b"n=3"),  # a default
    BASE.replace(b"math.sqrt", b"math.sqrt1"),  # a name
    BASE.replace(b'import math\n', b'import math\n"""a string that is no docstring"""\n'),  # a statement
    BASE.replace(b'"""One step."""', b'"""One step."""\n        x = x'),  # a statement after the docstring
], ids=["constant", "operator", "default", "name", "string-statement", "assignment"])
def test_a_code_edit_changes_the_digest(edited):
    assert source_digest(edited) != source_digest(BASE)


def test_a_file_that_does_not_parse_counts_by_its_bytes():
    broken = b"def broken(:\n"
    assert source_digest(broken) != source_digest(broken + b"# a comment\n")
    assert source_digest(broken) == source_digest(broken)
