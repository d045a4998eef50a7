"""``bench report``: aggregate a run's cell files with pandas; box plots with seaborn."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from benchmark.errors import UserError  # noqa: E402
from benchmark.store import RunStore  # noqa: E402

METRICS = ("mse", "psnr", "ssim")
GROUP = ["label", "scenario", "sigma"]


def load_run(run_dir: str | Path) -> tuple[RunStore, pd.DataFrame]:
    """The rows of the cells this run planned (stale cells of an older grid are ignored)."""
    store = RunStore(run_dir)
    if not store.root.is_dir():
        raise UserError(f"{store.root}: no such run directory")
    manifest = store.read_manifest()
    planned = {c["id"] for c in manifest["cells"]}
    rows = store.read_rows()
    rows = rows[rows["cell"].isin(planned)]
    if rows.empty:
        raise UserError(f"{store.root}: no finished cell to report on")
    return store, rows


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and median of every metric per method label × scenario × σ."""
    table = rows.groupby(GROUP)[list(METRICS)].agg(["mean", "median"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    counts = rows.groupby(GROUP).size().rename("n")
    return pd.concat([counts, table], axis=1).reset_index()


def box_plot(rows: pd.DataFrame, metric: str, path: Path) -> None:
    """One box per method, faceted by scenario (rows) and σ (columns)."""
    grid = sns.catplot(data=rows, x="label", y=metric, col="sigma", row="scenario", kind="box",
                       showfliers=False, height=3.2, aspect=1.2, sharey=True)
    grid.set_xticklabels(rotation=45, ha="right")
    grid.set_axis_labels("", metric.upper())
    grid.figure.tight_layout()
    grid.figure.savefig(path, dpi=120)
    plt.close(grid.figure)


def write_report(run_dir: str | Path) -> Path:
    """Write ``summary.csv`` and ``figures/box_<metric>.png`` into the run directory."""
    store, rows = load_run(run_dir)
    summary = summarise(rows)
    summary.to_csv(store.root / "summary.csv", index=False)
    figures = store.root / "figures"
    figures.mkdir(exist_ok=True)
    for metric in METRICS:
        box_plot(rows, metric, figures / f"box_{metric}.png")
    return store.root / "summary.csv"
