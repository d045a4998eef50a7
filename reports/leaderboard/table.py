"""The leaderboard's table from its two runs: one row per entry, settings (a) and (b) side by side.

    .venv/bin/python reports/leaderboard/table.py        # → reports/leaderboard/leaderboard.md and .csv

Reads each run's summary.csv (written by ``bench report``) and its cells' metadata (budget, parameters, seconds,
learning history). Every number is sepbench's protocol: all test mixtures, both sources, the best output→source
assignment, scikit-image SSIM (data_range 1), mean over scored images.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
RUNS = {"a": HERE / "paper", "b": HERE / "fullres"}


def cells(run: Path) -> pd.DataFrame:
    rows = []
    for path in sorted((run / "cells").glob("*.json")):
        meta = json.loads(path.read_text())
        if meta.get("status") != "done":
            continue
        config, history = meta["config"], meta.get("history") or []
        budget = config.get("budget") or {}
        trained = budget.get("mixtures", 0) * budget.get("epochs", 0) if budget else 0
        last = [h["val_loss"] for h in history if h.get("val_loss") is not None]
        rows.append({"label": config["label"], "method": config["method"], "params": meta.get("n_parameters"),
                     "trained": trained, "fit_min": meta.get("fit_seconds", 0.0) / 60,
                     "precision": meta.get("precision"),
                     "converged": "" if len(last) < 2 else ("no" if last[-1] < last[-2] else "yes")})
    return pd.DataFrame(rows)


def order(merged: pd.DataFrame) -> list[int]:
    """Rows by (a) MSE; an entry run on (b) only goes just above the first entry it beats on (b)."""
    keys = pd.DataFrame({"mse": merged["mse_a"], "b_only": merged["mse_a"].isna()})
    both = merged.dropna(subset=["mse_a", "mse_b"])
    for i in merged.index[keys["b_only"] & merged["mse_b"].notna()]:
        beaten = both.loc[both["mse_b"] >= merged.at[i, "mse_b"], "mse_a"]
        keys.at[i, "mse"] = beaten.min() if len(beaten) else float("inf")
    # on a tie the (b)-only entry goes first: it beat that entry on (b)
    return list(keys.sort_values(["mse", "b_only"], ascending=[True, False], na_position="last").index)


def main() -> None:
    merged = None
    for key, run in RUNS.items():
        summary = pd.read_csv(run / "summary.csv")[["label", "mse_mean", "psnr_mean", "ssim_mean"]]
        summary = summary.rename(columns={"mse_mean": "mse", "psnr_mean": "psnr", "ssim_mean": "ssim"})
        table = cells(run).merge(summary, on="label")
        table = table.rename(columns={c: f"{c}_{key}" for c in table.columns if c not in ("label", "method")})
        merged = table if merged is None else merged.merge(table, on=["label", "method"], how="outer")
    merged = merged.iloc[order(merged)].reset_index(drop=True)
    merged.to_csv(HERE / "leaderboard.csv", index=False)

    def num(value: float, fmt: str) -> str:
        return "–" if pd.isna(value) else format(value, fmt)

    lines = ["| method | parameters | trained on (a) / (b) | fit minutes (a) / (b) | (a) MSE | (a) PSNR | (a) SSIM | "
             "(b) MSE | (b) PSNR | (b) SSIM |", "|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for row in merged.itertuples():
        n = row.params_a if pd.notna(row.params_a) else row.params_b
        params = f"{int(n):,}" if pd.notna(n) and n else "–"
        trained = " / ".join("–" if pd.isna(t) or not t else f"{int(t):,}" for t in (row.trained_a, row.trained_b))
        minutes = f"{num(row.fit_min_a, '.1f')} / {num(row.fit_min_b, '.1f')}"
        lines.append(f"| {row.label} | {params} | {trained} | {minutes} | "
                     f"{num(row.mse_a, '.3g')} | {num(row.psnr_a, '.2f')} | {num(row.ssim_a, '.3f')} | "
                     f"{num(row.mse_b, '.3g')} | {num(row.psnr_b, '.2f')} | {num(row.ssim_b, '.3f')} |")
    (HERE / "leaderboard.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
