"""Progress of a run as the driver sees it: cells done / running / failed / total, an ETA, a line per cell."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _share_done(info: Mapping[str, Any], before: int = 0) -> float:
    """The share of what a cell trains *in this run* that an epoch report says is done: steps within the epoch
    count, and a cell resumed after epoch ``before`` has only its last ``epochs - before`` epochs to train."""
    epochs, epoch = float(info["epochs"]), float(info["epoch"])
    if epoch <= before:  # it did not resume after all (its checkpoint turned out to be unusable): all epochs train
        before = 0
    steps = float(info.get("steps") or 0)
    within = float(info.get("step") or 0) / steps if steps else 1.0
    if epochs <= before:
        return 1.0
    return min(max((epoch - 1 + within - before) / (epochs - before), 0.0), 1.0)


class RunProgress:
    """Counts cells and prints one line per finished cell with its headline metric and the run's ETA."""

    def __init__(self, total: int, stream: TextIO | None = None, expected: Mapping[str, float] | None = None,
                 parallel: float = 1.0, resumed: Mapping[str, int] | None = None) -> None:
        """``expected``: the plan's estimate of each pending cell's seconds, by description (only where the
        estimates apply: CPU runs); ``parallel``: how many cells run at once; ``resumed``: the epochs done of cells
        that resume from a checkpoint, by description."""
        self.total = total
        self.done = 0
        self.failed = 0
        self.running = 0
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.expected = {d: e for d, e in (expected or {}).items() if e > 0}
        self.parallel = max(parallel, 1.0)
        self.begun: dict[str, float] = {}  # running cells: when they started
        self.fraction: dict[str, float] = {}  # running cells: the share of their epochs done (from epoch reports)
        self.spent: dict[str, float] = {}  # finished cells: their seconds
        self.resumed = dict(resumed or {})

    def line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def counts(self) -> str:
        return f"{self.done} done, {self.running} running, {self.failed} failed, {self.total} total"

    def eta(self) -> str:
        """Time left. With the plan's estimates: the estimated seconds of the unfinished cells, scaled by how
        far off the estimates were for the cells that finished well (the longest cells go first, so the mean
        time per finished cell says little about the rest; a failed cell's seconds say nothing), less what
        running cells have done — from their own epoch reports where they sent some — over the cells run at once.
        Without estimates: the mean time per finished cell times the cells left."""
        finished = self.done + self.failed
        if not self.expected:
            if not finished:
                return "ETA unknown"
            remaining = (time.monotonic() - self.started) / finished * (self.total - finished)
            return f"ETA {format_duration(remaining)}"
        measured = [d for d in self.spent if d in self.expected]
        scale = (sum(self.spent[d] for d in measured) / sum(self.expected[d] for d in measured)) if measured else 1.0
        now = time.monotonic()
        left = [self._left(d, e * scale, now) for d, e in self.expected.items() if d not in self.spent]
        remaining = max(sum(left) / self.parallel, max(left, default=0.0))
        return f"ETA {format_duration(remaining)}"

    def _left(self, description: str, estimate: float, now: float) -> float:
        """Seconds a pending or running cell has left: its estimate less its time so far; a cell that reported
        epochs extrapolates its own pace (the epochs are most of a learned cell's time)."""
        if description not in self.begun:
            return estimate
        elapsed = now - self.begun[description]
        share = self.fraction.get(description, 0.0)
        if 0 < share < 1:
            return elapsed * (1 - share) / share
        return max(estimate - elapsed, 0.0)

    def started_cell(self, description: str) -> None:
        self.running += 1
        self.begun[description] = time.monotonic()

    def finished_cell(self, description: str, meta: dict[str, Any]) -> None:
        self.running = max(0, self.running - 1)
        started = self.begun.pop(description, None)
        self.fraction.pop(description, None)
        if meta.get("status") == "done":  # this run's seconds (a resumed cell's record counts the earlier epochs too)
            seconds = float(meta.get("seconds") or 0.0) - float(meta.get("fit_seconds_before_resume") or 0.0)
            self.spent[description] = seconds if seconds > 0 else (time.monotonic() - started if started else 0.0)
            self.done += 1
            outcome = f"MSE {meta['mse']:.4g}  SSIM {meta['ssim']:.3f}  ({format_duration(meta['seconds'])})"
            if meta.get("gpu_ids"):  # where an executor put it
                outcome += f" on GPU {','.join(map(str, meta['gpu_ids']))}: {meta.get('device_note') or meta['device']}"
        else:
            self.expected.pop(description, None)  # a failed cell's seconds say nothing of how long the others take
            self.failed += 1
            outcome = f"FAILED: {meta.get('error', 'unknown error')}"
        self.line(f"[{self.done + self.failed}/{self.total}] {description}: {outcome} | {self.counts()} | "
                  f"{self.eta()}")

    def epoch_reporter(self, description: str) -> Callable[[dict[str, Any]], None]:
        """A callback for ``FitContext.progress`` printing one line per finished epoch (and its share of the cell's
        epochs, for the ETA), and a cell's notices (``{"notice": text}``: a wait, a one-off training)."""

        def report(info: dict[str, Any]) -> None:
            if "notice" in info:
                self.line(f"    {description}: {str(info['notice']).strip()}")
                return
            if info.get("epochs") and "epoch" in info and description in self.begun:
                self.fraction[description] = _share_done(info, self.resumed.get(description, 0))
            if "val_loss" in info:
                eta = self.eta() if self.total else "ETA unknown"
                self.line(f"    {description}: epoch {info['epoch']}/{info['epochs']} "
                          f"train {info['train_loss']:.5f} val {info['val_loss']:.5f} ({info['seconds']:.1f}s)"
                          + ("" if eta == "ETA unknown" else f" | {eta}"))

        return report
