"""Labels in any script: fonts with wide coverage as fallbacks where the system has them, and one warning (not one
per glyph and draw) naming the characters no font could draw.

Matplotlib warns once per missing glyph per drawn text, so a CJK or emoji method label used to flood the
terminal with hundreds of "Glyph … missing from font(s)" lines while the report was written.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import matplotlib
from matplotlib import font_manager

log = logging.getLogger("sepbench.report")
#: fonts tried, in order, for glyphs DejaVu Sans lacks (CJK, Hangul, symbols, monochrome emoji); used if installed
FALLBACKS = ("Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK KR", "Noto Sans", "Noto Sans Symbols",
             "Noto Sans Symbols 2", "Noto Emoji", "WenQuanYi Zen Hei", "Droid Sans Fallback", "Symbola",
             "Unifont")
_GLYPH = re.compile(r"Glyph (\d+) .*missing from font")


def fallback_fonts() -> list[str]:
    """The ``FALLBACKS`` this system has, in order (naming an absent family would make matplotlib warn)."""
    present = {font.name for font in font_manager.fontManager.ttflist}
    return [name for name in FALLBACKS if name in present]


@contextmanager
def covered_glyphs() -> Iterator[set[str]]:
    """Draw with the fallback fonts; swallow matplotlib's per-glyph warnings, then log one line naming the
    characters still missing (the yielded set collects them). Other warnings pass through unchanged."""
    missing: set[str] = set()
    fallbacks = fallback_fonts()
    rc = {"font.family": ["DejaVu Sans", *fallbacks]} if fallbacks else {}
    with warnings.catch_warnings(record=True) as caught, matplotlib.rc_context(rc):
        warnings.filterwarnings("always", message="Glyph .* missing from font")
        yield missing
    for warning in caught:
        found = _GLYPH.search(str(warning.message))
        if found:
            missing.add(chr(int(found.group(1))))
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if missing:
        log.warning("report figures: %d character(s) in labels are not in any installed font and are drawn as "
                    "boxes: %s (a font such as Noto Sans CJK would draw them)", len(missing),
                    " ".join(sorted(missing)))
