"""How far a rerun's scores may be from the committed ones: one table, by kind of cell, overridable per metric.

Every row is a bound for a rerun on another CPU (the test mixtures' floats may differ there by an ulp). The trained
rows come from such reruns (issue 24): an fp32 ``fcsae-pit`` cell moved +0.13 % in MSE, a bf16 ``ligt-spatial-pit``
cell +3.0 % (SSIM −0.013). Cells that train nothing were first held to 10⁻⁹ relative, from reruns where they were
bit-identical (same CPU family); on an Intel Xeon, ``reports/quick`` (made on an AMD EPYC) moved: ``average`` on the
dual scenario by 1.3·10⁻⁹ relative (Gaussian SSIM), ``ica`` (FastICA: iterations over BLAS) by 6.1·10⁻⁵ relative
in MSE, 0.0002 dB and 0.0004 in SSIM — so the untrained row bounds them at 0.1 %, 0.01 dB and 0.002 (5–50× those).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from sepbench.errors import UserError

# means over the cell's scored rows (ssim_gauss: Wang et al.'s Gaussian-window SSIM, in cells since it was added);
# recognised: the rate
METRICS = ("mse", "psnr", "ssim", "ssim_gauss", "recognised")


@dataclass(frozen=True)
class Tolerance:
    """A bound on |rerun − committed|: ``relative`` to the committed value, else absolute in the metric's unit."""

    value: float
    relative: bool = False
    unit: str = ""

    def difference(self, committed: float, rerun: float) -> float:
        """The difference this tolerance bounds (relative: a fraction of the committed value)."""
        if committed == rerun:  # also equal infinities (a perfect PSNR)
            return 0.0
        diff = abs(rerun - committed)
        return diff / abs(committed) if self.relative and committed != 0 else diff

    def holds(self, committed: float, rerun: float) -> bool:
        diff = self.difference(committed, rerun)
        return math.isfinite(diff) and diff <= self.value

    def describe(self) -> str:
        if self.relative:
            return f"{self.value:.3g} relative" if self.value < 1e-4 else f"{self.value * 100:g} % relative"
        return f"{self.value:g}{' ' + self.unit if self.unit else ''} absolute"


# recognised: the shipped digit classifier's float32 logits may differ by an ulp between CPUs, so a near-tie can flip
# and even a cell that trains nothing may see its rate move by a few mixtures (0.01 = 5 of 500)
TOLERANCES: dict[str, dict[str, Tolerance]] = {
    "untrained": {"mse": Tolerance(1e-3, relative=True), "psnr": Tolerance(0.01, unit="dB"),
                  "ssim": Tolerance(0.002), "ssim_gauss": Tolerance(0.002), "recognised": Tolerance(0.01)},
    "fp32": {"mse": Tolerance(0.01, relative=True), "psnr": Tolerance(0.05, unit="dB"),
             "ssim": Tolerance(0.005), "ssim_gauss": Tolerance(0.005), "recognised": Tolerance(0.01)},
    "bf16": {"mse": Tolerance(0.05, relative=True), "psnr": Tolerance(0.25, unit="dB"),
             "ssim": Tolerance(0.02), "ssim_gauss": Tolerance(0.02), "recognised": Tolerance(0.03)},
}
KINDS = {"untrained": "trains nothing", "fp32": "trained in fp32", "bf16": "trained in bf16"}


def cell_kind(record: dict[str, Any]) -> str:
    """'untrained', 'fp32' or 'bf16': which row of :data:`TOLERANCES` a committed cell is held to."""
    config = record.get("config") or {}
    if not config.get("budget"):
        return "untrained"
    precision = record.get("precision") or (config.get("budget") or {}).get("precision") or "fp32"
    return "bf16" if precision == "bf16" else "fp32"


def parse_tolerances(items: tuple[str, ...] | list[str]) -> dict[str, float]:
    """``metric=value`` items (``--tolerance``) as a mapping; a bad item is a UserError (one line, exit 2)."""
    found: dict[str, float] = {}
    for item in items:
        metric, sep, text = item.partition("=")
        metric = metric.strip()
        if not sep or metric not in METRICS:
            raise UserError(f"--tolerance {item!r}: expected METRIC=VALUE with METRIC one of {', '.join(METRICS)}")
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value >= 0):
            raise UserError(f"--tolerance {item!r}: expected a finite value ≥ 0 (mse: a fraction, e.g. 0.02 for "
                            "2 %; psnr: dB; ssim, ssim_gauss, recognised: absolute)")
        found[metric] = value
    return found


def tolerances_for(kind: str, overrides: dict[str, float]) -> dict[str, Tolerance]:
    """The table's row for ``kind`` with ``overrides`` (each in its metric's own kind: relative or absolute)."""
    row = dict(TOLERANCES[kind])
    for metric, value in overrides.items():
        row[metric] = replace(row[metric], value=value)
    return row
