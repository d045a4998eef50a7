"""The audit's README tables from its two runs' paper-protocol.csv (written by ``bench report --protocol paper``).

    .venv/bin/python reports/paper-audit/tables.py       # prints the README's tables (markdown)

A = the paper's protocol, E = sepbench's; B, C, D change one thing at a time (see paper-protocol.md).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
RUNS = {"300,000": HERE, "3,000": HERE / "small-budget"}  # training mixtures per network → paper-protocol.csv
STEPS = [("A", "B", "train mode (A−B)"), ("B", "C", "157 images (B−C)"), ("C", "D", "one output, max-SSIM (C−D)"),
         ("D", "E", "SSIM window (D−E)")]


def pair(row: pd.Series, step: str) -> str:
    return f"{row[f'{step}_mse']:.4f} / {row[f'{step}_ssim']:.3f}"


def main() -> None:
    frames = {budget: pd.read_csv(run / "paper-protocol.csv") for budget, run in RUNS.items()
              if (run / "paper-protocol.csv").exists()}
    labels = list(dict.fromkeys(label for f in frames.values() for label in f["label"]))
    out = ["| method | paper's table | " + " | ".join(f"{b} mixtures: paper's protocol (A) | {b}: sepbench's (E)"
                                                      for b in frames) + " |",
           "|:--|--:|" + "--:|--:|" * len(frames)]
    for label in labels:
        cells, paper = [], "–"
        for frame in frames.values():
            rows = frame[frame["label"] == label]
            if rows.empty:
                cells += ["–", "–"]
                continue
            row = rows.iloc[0]
            if pd.notna(row["paper_mse"]):
                paper = f"{row['paper_mse']:.4f} / {row['paper_ssim']:.2f}"
            cells += [pair(row, "A"), pair(row, "E")]
        out.append(f"| {label} | {paper} | " + " | ".join(cells) + " |")
    for budget, frame in frames.items():
        out += ["", f"Each step, {budget} training mixtures (MSE / SSIM):", "",
                "| method | A paper | B eval mode | C all images | D both outputs, MSE matching | E sepbench |",
                "|:--|--:|--:|--:|--:|--:|"]
        out += [f"| {r['label']} | " + " | ".join(pair(r, s) for s in "ABCDE") + " |" for _, r in frame.iterrows()]
        out += ["", f"Differences between consecutive steps, {budget} mixtures (MSE / SSIM; positive = the earlier "
                "step is higher):", "", "| method | " + " | ".join(name for _, _, name in STEPS) + " |",
                "|:--|" + "--:|" * len(STEPS)]
        for _, r in frame.iterrows():
            diffs = [f"{r[f'{a}_mse'] - r[f'{b}_mse']:+.4f} / {r[f'{a}_ssim'] - r[f'{b}_ssim']:+.3f}"
                     for a, b, _ in STEPS]
            out.append(f"| {r['label']} | " + " | ".join(diffs) + " |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
