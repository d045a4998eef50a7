"""``bench report --protocol paper``: the paper's scoring protocol beside sepbench's, from the cells' records.

A cell scored on the paper's test pairs records steps A–E of :mod:`sepbench.paper_protocol` (A is the paper's
protocol, E sepbench's); this page tabulates them per method, with the paper's own table beside them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sepbench.errors import UserError
from sepbench.paper_protocol import STEPS
from sepbench.report.load import load_run

# the paper's Table (mean MSE, mean SSIM), by the method sepbench names for its network
PAPER_TABLE = {"convsep": (4.66e-2, 0.75), "ligt": (3.00e-2, 0.72), "ligt-batchseq": (3.00e-2, 0.72)}


def paper_table(run_dir: str | Path) -> pd.DataFrame:
    """One row per (label, scenario, σ): the mean over seeds of each step's MSE and SSIM."""
    run = load_run(run_dir)
    records = []
    for cell_id, meta in run.meta.items():
        config = meta["config"]
        if "paper_protocol" not in meta:
            raise UserError(f"{run.root}: cell {cell_id} ({config['label']}) was not scored on the paper's test "
                            "pairs: the paper's protocol needs a grid with `test: {pairs: paper}`")
        record = {"label": config["label"], "method": config["method"], "scenario": config["scenario"]["name"],
                  "superpose": config["scenario"].get("superpose", "sum"), "sigma": config["sigma"],
                  "seed": config["seed"], "train_mode": meta["paper_protocol"]["train_mode"]}
        for step, scores in meta["paper_protocol"]["steps"].items():
            record[f"{step}_mse"], record[f"{step}_ssim"] = scores["mse"], scores["ssim"]
        records.append(record)
    frame = pd.DataFrame(records)
    keys = ["label", "method", "scenario", "superpose", "sigma"]
    table = frame.groupby(keys, sort=False).agg(
        seeds=("seed", "nunique"), train_mode=("train_mode", "all"),
        **{c: (c, "mean") for c in frame.columns if c[:2] in {f"{s}_" for s in STEPS}}).reset_index()
    table["paper_mse"] = table["method"].map(lambda m: PAPER_TABLE.get(m, (None, None))[0])
    table["paper_ssim"] = table["method"].map(lambda m: PAPER_TABLE.get(m, (None, None))[1])
    return table


def _markdown(table: pd.DataFrame) -> str:
    lines = ["# The paper's protocol beside sepbench's", "",
             "Steps (each changes one thing): " + "; ".join(f"{k} = {v}" for k, v in STEPS.items()) + ". "
             "A is the paper's protocol (157 images, output 2, max-SSIM matching, 11×11 Gaussian SSIM, train "
             "mode), E sepbench's (every mixture, both outputs, MSE matching, scikit-image SSIM, eval mode).", "",
             "| method | scenario | σ | " + " | ".join(f"{k} MSE | {k} SSIM" for k in STEPS) + " | paper MSE | "
             "paper SSIM |",
             "|:--|:--|--:|" + "--:|" * (2 * len(STEPS) + 2)]
    for _, row in table.iterrows():
        cells = [f"{row[f'{k}_mse']:.4f} | {row[f'{k}_ssim']:.3f}" for k in STEPS]
        paper = (f"{row['paper_mse']:.4f} | {row['paper_ssim']:.2f}" if pd.notna(row["paper_mse"]) else "– | –")
        lines.append(f"| {row['label']} | {row['scenario']} ({row['superpose']}) | {row['sigma']:g} | "
                     + " | ".join(cells) + f" | {paper} |")
    return "\n".join(lines) + "\n"


def write_paper_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``paper-protocol.csv`` and ``paper-protocol.md`` into ``out`` (default the run directory)."""
    table = paper_table(run_dir)
    target = Path(out or run_dir)
    target.mkdir(parents=True, exist_ok=True)
    table.to_csv(target / "paper-protocol.csv", index=False)
    path = target / "paper-protocol.md"
    path.write_text(_markdown(table))
    return path
