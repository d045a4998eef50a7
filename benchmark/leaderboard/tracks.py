"""Tracks: a training budget (mixtures seen) and a precision that every entry of a track trains on exactly, and
what the leaderboard reads from a cell's record to place it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sepbench.training_machines import machine_names

STILL_FALLING = 0.01  # the last epoch's validation loss below the one before by more than this: not converged


@dataclass(frozen=True)
class Track:
    """A budget every entry of the track trains on exactly."""

    name: str
    mixtures_seen: int
    precision: str
    about: str

    def describe(self) -> str:
        return f"{self.name}: {self.mixtures_seen:,} training mixtures seen, {self.precision}"


TRACKS = (
    Track("small", 60_000, "fp32", "every built-in learned method (grid leaderboard-small)"),
    Track("large", 480_000, "fp32", "the reference separators (grid leaderboard-large)"),
)


def cell_facts(meta: dict[str, Any]) -> dict[str, Any]:
    """What the leaderboard reads from a cell's record besides its rows: budget, precision, parameters, fit time
    (on a CPU: seconds × threads, core-seconds; on a GPU: its seconds, which cores do not measure), the device (each
    one, for a cell resumed on another machine: ``trained_on``), the best validation loss and whether it was still
    falling."""
    budget = meta["config"].get("budget")
    fit = float(meta.get("fit_seconds", 0.0))
    on_gpu = str(meta.get("device") or "cpu").startswith("cuda")
    history = [h for h in meta.get("history") or [] if h.get("val_loss") is not None]
    val = [float(h["val_loss"]) for h in history]
    falling = len(val) >= 2 and val[-1] < val[-2] * (1 - STILL_FALLING)
    return {"mixtures_seen": budget["mixtures"] * budget["epochs"] if budget else 0,
            "precision": meta.get("precision"), "n_parameters": meta.get("n_parameters"),
            "fit_core_seconds": math.nan if on_gpu else fit * int(meta.get("threads", 1) or 1),
            "fit_gpu_seconds": fit if on_gpu else math.nan, "device_name": machine_names(meta),
            "best_val_loss": min(val) if val else math.nan, "still_falling": bool(falling),
            "trains": budget is not None}


def track_name(facts: dict[str, Any]) -> str | None:
    """The track a trained cell belongs to; None for a cell that trains nothing (a reference in every track)."""
    if not facts["trains"]:
        return None
    for track in TRACKS:
        if (facts["mixtures_seen"], facts["precision"]) == (track.mixtures_seen, track.precision):
            return track.name
    return f"other ({facts['mixtures_seen']:,} mixtures, {facts['precision']})"
