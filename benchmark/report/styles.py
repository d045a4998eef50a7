"""How entries look in every figure: a hue per method family (the implementation behind the labels), a shade and a
line style per member, and a legend grouped by family that stays a few rows tall with 18 or more entries.

A family is the method an entry runs (``unet`` for ``unet``, ``unet-fixed``, ``unet-1h``); without that mapping
every entry is its own family, which gives the plain one-colour-per-entry palette.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.legend import Legend
from matplotlib.lines import Line2D

Colour = tuple[float, float, float]
#: up to this many entries the legend is one plain list beside the plot; past it, grouped by family below it
PLAIN_LEGEND = 8
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")


def family_groups(entries: Sequence[str], families: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """Family → its entries, families and members in the order of ``entries``."""
    groups: dict[str, list[str]] = {}
    for entry in entries:
        groups.setdefault((families or {}).get(entry, entry), []).append(entry)
    return groups


def _shade(colour: Colour, k: int, n: int) -> Colour:
    """The k-th of n shades of one hue, dark to light (the hue itself when n == 1)."""
    if n == 1:
        return colour
    hue, lightness, saturation = colorsys.rgb_to_hls(*colour)
    lightness = min(0.64, max(0.18, lightness - 0.16 + 0.26 * k / (n - 1)))
    return colorsys.hls_to_rgb(hue, lightness, saturation)


def palette(entries: Sequence[str], families: Mapping[str, str] | None = None) -> dict[str, Colour]:
    """One colour per entry, the same in every figure: a hue per family, shades within it."""
    groups = family_groups(entries, families)
    hues = sns.color_palette("deep" if len(groups) <= 10 else "husl", max(len(groups), 1))
    return {entry: _shade(tuple(hue), k, len(members))
            for hue, members in zip(hues, groups.values(), strict=False) for k, entry in enumerate(members)}


def line_styles(entries: Sequence[str], families: Mapping[str, str] | None = None) -> dict[str, dict]:
    """Keyword arguments of ``plot`` per entry: its colour, and a line style and marker by its place in its family,
    so that two members of a family differ by more than a shade."""
    colours = palette(entries, families)
    return {entry: {"color": colours[entry], "ls": LINESTYLES[k % len(LINESTYLES)], "marker": MARKERS[k % len(MARKERS)]}
            for members in family_groups(entries, families).values() for k, entry in enumerate(members)}


def legend_columns(entries: Sequence[str], families: Mapping[str, str] | None = None,
                   max_columns: int = 6) -> list[list[str | None]]:
    """The grouped legend's layout: columns of rows (``None``: blank), each family whole in one column, headed by
    ``"\0" + family`` when it has several members; families in order, as few rows as fit in ``max_columns``."""
    groups = family_groups(entries, families)
    blocks = [([f"\0{family}"] if len(members) > 1 else []) + members for family, members in groups.items()]
    rows = max(max(len(b) for b in blocks), math.ceil(sum(len(b) for b in blocks) / max_columns))
    while True:
        columns: list[list[str | None]] = [[]]
        for block in blocks:
            if columns[-1] and len(columns[-1]) + len(block) > rows:
                columns.append([])
            columns[-1].extend(block)
        if len(columns) <= max_columns:
            return [column + [None] * (rows - len(column)) for column in columns]
        rows += 1


def entry_legend(figure: plt.Figure, handles: Mapping[str, object], entries: Sequence[str],
                 families: Mapping[str, str] | None = None, extra: Mapping[str, object] | None = None,
                 width_in: float | None = None) -> Legend | None:
    """The figure's legend for ``handles`` (entry → artist, in ``entries`` order; ``extra`` appended, e.g. the
    ground truth): a plain list at the right for a few entries, else grouped by family in columns below."""
    shown = [entry for entry in entries if entry in handles]
    extra = dict(extra or {})
    if not shown and not extra:
        return None
    if len(shown) <= PLAIN_LEGEND:
        labels = [*shown, *extra]
        return figure.legend([handles.get(label, extra.get(label)) for label in labels], labels,
                             loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=9)
    width = width_in or figure.get_figwidth()
    columns = legend_columns(shown, families, max_columns=max(4, int(width / 1.75)))
    if extra:
        columns.append(list(extra) + [None] * (len(columns[0]) - len(extra)))
    blank = Line2D([], [], alpha=0.0)
    artists, labels, headers = [], [], []
    for column in columns:
        for item in column:
            if item is None or item.startswith("\0"):
                artists.append(blank)
                labels.append("" if item is None else item[1:])
                if item is not None:
                    headers.append(len(labels) - 1)
            else:
                artists.append(handles.get(item, extra.get(item)))
                labels.append(item)
    legend = figure.legend(artists, labels, ncol=len(columns), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                           frameon=False, fontsize=8.5, columnspacing=1.4, handlelength=2.2)
    for index in headers:
        legend.get_texts()[index].set_fontweight("bold")
    return legend
