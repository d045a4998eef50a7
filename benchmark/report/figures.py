"""Figures of a report: box plots (the paper's Fig. 5), metrics against σ, the Wilcoxon win/loss matrix.

Every function writes one PNG and returns its path; colours follow one palette (styles.py: a hue per method
family) so that a method keeps its colour in every figure.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter  # noqa: E402

from sepbench.report.stats import outcome_matrix  # noqa: E402
from sepbench.report.styles import PLAIN_LEGEND, entry_legend, line_styles, palette  # noqa: E402

NAMES = {"mse": "MSE", "psnr": "PSNR (dB)", "ssim": "SSIM", "recognised": "recognised (fraction)"}
DPI = 110


Families = Mapping[str, str] | None  # entry → its method (styles.py); None: every entry its own family


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(figure)
    return path


def sigma_label(sigma: float) -> str:
    return f"σ = {sigma:g}"


def on_datasets(on: str) -> str:
    """A figure title's ending that names the dataset(s) it is on (``on`` empty: none)."""
    return f" · on {on}" if on else ""


def box_plot(rows: pd.DataFrame, metric: str, entries: Sequence[str], path: Path, families: Families = None,
             on: str = "") -> Path:
    """One box per method (whiskers 1.5 IQR, no fliers), faceted by scenario (rows) and σ (columns); ``on`` names
    the dataset(s) in the title."""
    width = max(2.6, 0.55 * len(entries) + 1.0)
    with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib 3.10+'s deprecated ``vert``
        warnings.simplefilter("ignore", matplotlib.MatplotlibDeprecationWarning)
        grid = sns.catplot(data=rows.assign(noise=rows["sigma"].map(sigma_label)), x="entry", y=metric,
                           hue="entry", order=entries, hue_order=entries, palette=palette(entries, families),
                           col="noise", col_order=[sigma_label(s) for s in sorted(set(rows["sigma"]))], row="scenario",
                           kind="box", showfliers=False, legend=False, height=2.8, aspect=width / 2.8,
                           sharey=True, margin_titles=True)
    grid.set_titles(col_template="{col_name}", row_template="{row_name}")
    grid.set_axis_labels("", NAMES[metric])
    for ax in grid.axes.flat:
        ax.tick_params(axis="x", labelrotation=35)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
        ax.grid(axis="y", alpha=0.3)
    grid.figure.suptitle(f"{NAMES[metric]} per test image, by method{on_datasets(on)}", y=1.02)
    return _save(grid.figure, path)


def _sigma_axis(ax: plt.Axes, sigmas: Sequence[float]) -> None:
    positive = [s for s in sigmas if s > 0]
    if len(positive) >= 2 and max(positive) / min(positive) >= 10:
        ax.set_xscale("symlog" if min(sigmas) == 0 else "log", **({"linthresh": min(positive)}
                                                                   if min(sigmas) == 0 else {}))
    ax.set_xticks(list(sigmas))
    ax.set_xticklabels([f"{s:g}" for s in sigmas])
    ax.minorticks_off()


def metric_vs_sigma(summary: pd.DataFrame, metrics: Sequence[str], entries: Sequence[str], path: Path,
                    ceiling: Mapping[str, Sequence[float]] | None = None,
                    title: str = "Mean against noise level (bands: 95 % bootstrap interval)",
                    families: Families = None) -> Path:
    """Mean of each metric against σ, a line per method with its 95 % bootstrap band; a column per scenario.

    ``metrics`` may include ``recognised`` (the rate; ``ceiling``, scenario → its ground truth's rates, draws them
    dashed).
    """
    scenarios = list(dict.fromkeys(summary["scenario"]))
    sigmas = sorted(set(summary["sigma"]))
    styles = line_styles(entries, families)
    figure, axes = plt.subplots(len(metrics), len(scenarios), figsize=(4.2 * len(scenarios) + 1.6,
                                                                        3.0 * len(metrics)),
                                squeeze=False, sharex=True, sharey="row")
    handles: dict[str, object] = {}
    extra: dict[str, object] = {}
    for i, metric in enumerate(metrics):
        mean, low, high = ((f"{metric}_rate", f"{metric}_ci_low", f"{metric}_ci_high") if metric == "recognised"
                           else (f"{metric}_mean", f"{metric}_ci_low", f"{metric}_ci_high"))
        for j, scenario in enumerate(scenarios):
            ax = axes[i][j]
            part = summary[summary["scenario"] == scenario]
            for entry in entries:
                line = part[part["entry"] == entry].sort_values("sigma")
                if line.empty or line[mean].isna().all():
                    continue
                colour = styles[entry]["color"]
                (handles[entry],) = ax.plot(line["sigma"], line[mean], ms=4, **styles[entry])
                ax.fill_between(line["sigma"], line[low], line[high], color=colour, alpha=0.15, lw=0)
                if len(line) == 1:  # a band needs two σ: show the interval as an error bar
                    ax.errorbar(line["sigma"], line[mean], yerr=[line[mean] - line[low], line[high] - line[mean]],
                                color=colour, capsize=4, lw=1)
            if metric == "recognised" and ceiling:
                for value in sorted(set(ceiling.get(scenario, ()))):
                    extra["ground truth"] = ax.axhline(value, color="black", ls="--", lw=1)
            _sigma_axis(ax, sigmas)
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(scenario)
            if j == 0:
                ax.set_ylabel(NAMES[metric])
            if i == len(metrics) - 1:
                ax.set_xlabel("noise σ")
    figure.suptitle(title)
    figure.tight_layout()
    entry_legend(figure, handles, entries, families, extra)
    return _save(figure, path)


def wilcoxon_heatmap(tests: pd.DataFrame, entries: Sequence[str], path: Path, alpha: float, on: str = "") -> Path:
    """Per scenario × σ, a matrix: green where the row method has significantly lower MSE than the column."""
    scenarios = list(dict.fromkeys(tests["scenario"]))
    sigmas = sorted(set(tests["sigma"]))
    side = max(2.6, 0.5 * len(entries) + 1.4)
    figure, axes = plt.subplots(len(scenarios), len(sigmas), figsize=(side * len(sigmas) + 0.4,
                                                                      side * len(scenarios) + 0.6), squeeze=False)
    cmap = ListedColormap(["#d7301f", "#eeeeee", "#1a9850"])
    for (i, scenario), (j, sigma) in itertools.product(enumerate(scenarios), enumerate(sigmas)):
        ax = axes[i][j]
        matrix = outcome_matrix(tests, scenario, sigma, entries)
        if matrix.empty:
            ax.axis("off")
            continue
        text = matrix.map(lambda v: "" if np.isnan(v) else {1.0: "win", -1.0: "loss", 0.0: "–"}[v])
        sns.heatmap(matrix, ax=ax, cmap=cmap, vmin=-1.5, vmax=1.5, cbar=False, annot=text, fmt="",
                    linewidths=1, linecolor="white", square=True, annot_kws={"fontsize": 8})
        ax.set_title(f"{scenario} · {sigma_label(sigma)}", fontsize=10)
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.tick_params(axis="x", labelrotation=35, labelsize=8)
        ax.tick_params(axis="y", labelrotation=0, labelsize=8)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    figure.suptitle(f"Row vs column, per-mixture MSE, Wilcoxon signed-rank p < {alpha:g}{on_datasets(on)}\n"
                    "win: row significantly lower MSE · loss: significantly higher · –: no significant difference",
                    fontsize=10)
    figure.tight_layout()
    return _save(figure, path)


def common_settings(summary: pd.DataFrame) -> list[tuple[str, float]]:
    """The (scenario, σ) settings in which every entry was scored."""
    entries = set(summary["entry"])
    counts = summary.groupby(["scenario", "sigma"], sort=False)["entry"].agg(lambda e: set(e) == entries)
    return [key for key, every in counts.items() if every]


def cost_plot(summary: pd.DataFrame, cost: pd.DataFrame, entries: Sequence[str], path: Path,
              families: Families = None, on: str = "") -> Path | None:
    """Accuracy against cost: mean MSE over the settings every method ran, against training time and throughput.

    None when no setting is common to all methods (their means would not be comparable). A few entries are named
    beside their points; more would overlap there, so they get a marker per family member and the grouped legend.
    """
    settings = common_settings(summary)
    if not settings:
        return None
    styles = line_styles(entries, families)
    named = len(entries) <= PLAIN_LEGEND
    handles: dict[str, object] = {}
    common = summary.set_index(["scenario", "sigma"]).loc[settings].reset_index()
    mse = common.groupby("entry", sort=False)["mse_mean"].mean()
    figure, axes = plt.subplots(1, 2, figsize=(9.5, 3.4))
    for ax, column, name in ((axes[0], "fit_seconds", "training time per cell (s)"),
                             (axes[1], "mixtures_per_s", "separation throughput (mixtures/s)")):
        for _, row in cost.iterrows():
            if row["entry"] not in mse.index:
                continue
            x, style = max(float(row[column]), 1e-3), styles[row["entry"]]
            handles[row["entry"]] = ax.scatter(x, mse[row["entry"]], color=style["color"], s=40, zorder=3,
                                               marker="o" if named else style["marker"], edgecolors="black",
                                               linewidths=0.4)
            if named:
                ax.annotate(row["entry"], (x, mse[row["entry"]]), textcoords="offset points", xytext=(5, 4),
                            fontsize=8)
        ax.set_xscale("log")
        ax.margins(x=0.2, y=0.12)
        ax.set_xlabel(name)
        ax.set_ylabel("mean MSE")
        ax.grid(alpha=0.3)
    where = ", ".join(f"{scenario} σ={sigma:g}" for scenario, sigma in settings)
    figure.suptitle(f"Cost against accuracy: mean MSE over {where} (lower is better){on_datasets(on)}", fontsize=10)
    figure.tight_layout()
    if not named:
        entry_legend(figure, handles, entries, families)
    return _save(figure, path)


def learning_curves(curves: pd.DataFrame, status: pd.DataFrame, entries: Sequence[str], path: Path,
                    families: Families = None, on: str = "") -> Path:
    """Validation loss per epoch (left) and against training seconds (right), a line per method and seed, a row
    per (scenario, σ); a cell still falling in its last epoch ends in a hollow marker. One legend for all rows,
    grouped by method family past a few entries."""
    settings = list(dict.fromkeys(zip(curves["scenario"], curves["sigma"], strict=True)))
    styles = line_styles(entries, families)
    figure, axes = plt.subplots(len(settings), 2, figsize=(10.5, 2.9 * len(settings) + 0.5), squeeze=False,
                                sharey="row")
    handles: dict[str, object] = {}
    for i, (scenario, sigma) in enumerate(settings):
        part = curves[(curves["scenario"] == scenario) & (curves["sigma"] == sigma)]
        done = status[(status["scenario"] == scenario) & (status["sigma"] == sigma)].set_index(["entry", "seed"])
        for entry in [e for e in entries if e in set(part["entry"])]:
            style = styles[entry]
            for seed, line in part[part["entry"] == entry].groupby("seed", sort=True):
                line = line.sort_values("epoch")
                for ax, x in ((axes[i][0], "epoch"), (axes[i][1], "elapsed")):
                    (handles[entry],) = ax.plot(line[x], line["val_loss"], ms=3, **style)
                    if not done.loc[(entry, seed), "converged"]:
                        ax.plot(line[x].iloc[-1], line["val_loss"].iloc[-1], marker="o", ms=8, mfc="white",
                                color=style["color"])
        for j, name in enumerate(("epoch", "training seconds (cumulative)")):
            ax = axes[i][j]
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.grid(alpha=0.3, which="both")
            ax.set_xlabel(name)
            ax.set_title(f"{scenario} · {sigma_label(sigma)}", fontsize=10)
        axes[i][0].set_ylabel("validation loss")
        axes[i][0].xaxis.get_major_locator().set_params(integer=True)
    figure.suptitle("Learning curves: each method's own loss on its validation set (hollow end: still falling in "
                    f"its last epoch){on_datasets(on)}", fontsize=10)
    figure.tight_layout()
    entry_legend(figure, handles, entries, families)
    return _save(figure, path)
