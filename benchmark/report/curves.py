"""Learning curves: the validation loss of every learned cell per epoch and against training seconds, and
whether it had stopped falling (the plot benchopt users read first).

A cell's ``history`` (its json) holds one record per epoch: ``epoch``, ``train_loss``, ``val_loss``,
``seconds`` (that epoch, training and validation) and, since it was added, ``elapsed`` (all epochs so far;
older cells get the running sum of ``seconds``). The loss is each method's own training loss on its fixed
validation set, so its level is comparable between methods only where their losses are alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from sepbench.report.load import RunData, dataset_label, entry_names, setting_name, several_datasets

#: a cell is "not converged" when its last epoch lowered the validation loss by more than this fraction
STILL_FALLING = 1e-3
COLUMNS = ["run", "entry", "label", "scenario", "sigma", "seed", "epoch", "train_loss", "val_loss", "seconds",
           "elapsed"]


def learning_curves(runs: Sequence[RunData], several: bool) -> pd.DataFrame:
    """One row per learned cell × epoch (``COLUMNS``); empty when no cell of ``runs`` trained."""
    records = []
    by_dataset = several_datasets(runs)
    for run in runs:
        for meta in run.meta.values():
            config, elapsed = meta["config"], 0.0
            label = config["label"]
            scenario = setting_name(config["scenario"]["name"], dataset_label(config["dataset"]), by_dataset)
            for record in meta.get("history") or []:
                elapsed = record.get("elapsed", elapsed + record.get("seconds", 0.0))
                records.append({"run": run.name, "label": label, "scenario": scenario,
                                "sigma": config["sigma"], "seed": config["seed"], "epoch": record["epoch"],
                                "train_loss": record.get("train_loss"), "val_loss": record["val_loss"],
                                "seconds": record.get("seconds"), "elapsed": elapsed})
    frame = pd.DataFrame.from_records(records, columns=[c for c in COLUMNS if c != "entry"])
    frame.insert(1, "entry", entry_names(frame, several) if len(frame) else pd.Series(dtype=str))
    return frame


def convergence(curves: pd.DataFrame) -> pd.DataFrame:
    """Per entry × scenario × σ × seed: epochs, last and best validation loss, the last epoch's relative change,
    training seconds, and ``converged`` — False when the last epoch still lowered the loss by more than
    ``STILL_FALLING`` (or when there is only one epoch, which cannot show that the loss stopped falling)."""
    rows = []
    for key, cell in curves.groupby(["entry", "scenario", "sigma", "seed"], sort=False):
        cell = cell.sort_values("epoch")
        losses = cell["val_loss"].to_numpy(dtype=float)
        change = (losses[-1] - losses[-2]) / abs(losses[-2]) if len(losses) > 1 and losses[-2] else float("nan")
        rows.append({**dict(zip(["entry", "scenario", "sigma", "seed"], key, strict=True)),
                     "epochs": len(losses), "last_val_loss": losses[-1], "best_val_loss": losses.min(),
                     "last_change": change, "seconds": float(cell["elapsed"].iloc[-1]),
                     "converged": bool(len(losses) > 1 and not change < -STILL_FALLING)})
    return pd.DataFrame.from_records(rows, columns=["entry", "scenario", "sigma", "seed", "epochs", "last_val_loss",
                                                    "best_val_loss", "last_change", "seconds", "converged"])
