"""A cell's training time when it was resumed from an epoch checkpoint.

A cell interrupted after some epochs and resumed from its checkpoint trains only the remaining epochs in its last
attempt; its record's times count the whole training, the epochs before the interruption included.
"""

from __future__ import annotations

from typing import Any


def seconds_before_resume(history: Any, epoch: Any) -> float:
    """The training seconds a resumed cell had spent before its interruption: its history's ``elapsed`` at the
    epoch it resumed after (the checkpoint carries the history); 0 where the history does not say."""
    for entry in history if isinstance(history, list) else []:
        if isinstance(entry, dict) and entry.get("epoch") == epoch:
            value = entry.get("elapsed")
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                return float(value)
    return 0.0


def count_time_before_resume(record: dict[str, Any]) -> dict[str, Any]:
    """A resumed cell's ``fit_seconds`` and ``seconds`` count the epochs trained before the interruption, and
    ``fit_seconds_before_resume`` says how much of them that was. Records written before sepbench counted them
    (until 2026-12-04: the last attempt's time only, a third of the training for a cell resumed after epoch 2 of
    3) get them added here, as a record of today has them."""
    epoch = record.get("resumed_from_epoch")
    if epoch is None or "fit_seconds_before_resume" in record:
        return record
    before = seconds_before_resume(record.get("history"), epoch)
    record["fit_seconds_before_resume"] = before
    for key in ("fit_seconds", "seconds"):
        value = record.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            record[key] = float(value) + before
    return record
