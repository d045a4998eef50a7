"""What the page says: the blocks of each section, built from the summary, the tests and the figures."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from sepbench.report.caveats import caveats
from sepbench.report.load import RunData, datasets_of
from sepbench.report.page import Block, Table
from sepbench.report.seeds import blocks as seed_blocks
from sepbench.report.stats import outcome_matrix
from sepbench.report.summary import MAIN_METRIC, ranked

LOWER_IS_BETTER = {"mse": True, "psnr": False, "ssim": False}
TITLES = {"mse": "MSE", "psnr": "PSNR (dB)", "ssim": "SSIM"}


def fmt(value: Any, metric: str = "") -> str:
    """A number as a table shows it: MSE with 4 significant digits, PSNR 2 decimals, SSIM and rates 3."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if metric == "mse":
        return f"{value:.4g}"
    if metric == "psnr":
        return f"{value:.2f}"
    if metric in ("ssim", "rate"):
        return f"{value:.3f}"
    if metric == "p":
        return f"{value:.1e}" if value < 1e-3 else f"{value:.3f}"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def header(runs: Sequence[RunData], generated: str) -> list[Block]:
    """Title, what was run, and (first thing a reader sees) what is missing or failed."""
    names = [r.name for r in runs]
    title = f"sepbench report · {names[0]}" if len(runs) == 1 else "sepbench comparison · " + " vs ".join(names)
    blocks = [Block("h1", title)]
    for run in runs:
        manifest = run.manifest
        first = next(iter(run.meta.values()), {}).get("config")  # None: no cell finished
        data = (f"{', '.join(_dataset_line(label, spec) for label, spec in datasets_of([run]).items())} · "
                f"{first['test_mixtures']} test mixtures") if first else "no cell finished"
        seeds = sorted({c["seed"] for c in manifest["cells"]})
        versions = manifest.get("versions", {})
        blocks.append(Block("note", (
            f"{run.name}: {run.root} · grid {manifest.get('name', '?')} · {data} · "
            f"seeds {seeds} · {len(run.meta)} of {len(manifest['cells'])} cells done · "
            f"{manifest.get('started', '?')} → {manifest.get('ended') or 'not finished'} · "
            f"host {manifest.get('host', '?')} · torch {versions.get('torch', '?')}")))
    blocks.append(Block("note", f"Generated {generated} by bench report."))
    problems, warnings, out_of_grid = [], [], []
    for run in runs:
        prefix = f"{run.name}: " if len(runs) > 1 else ""
        damaged, stale, notes = caveats(run, prefix)
        problems += damaged
        warnings += stale
        out_of_grid += notes
        for cell in run.failed:
            problems.append(f"{prefix}failed: {_describe(cell)} (cell {cell['id']}): {cell['error']}")
        for cell in run.missing:
            problems.append(f"{prefix}missing: {_describe(cell)} (cell {cell['id']})")
    if problems:
        total = sum(len(r.manifest["cells"]) for r in runs)
        rest = "the tables and figures below show the rest. " if any(r.meta for r in runs) else ""
        blocks.append(Block("warn", f"Incomplete: {len(problems)} of {total} planned cells have no results; {rest}"
                                    "Rerun `bench run` on the same grid to complete them.", items=problems))
    if warnings:
        blocks.append(Block("warn", "Cells of this run came from different code, data or versions, or were kept "
                                    "although what produced them changed; compare them with care.", items=warnings))
    if out_of_grid:
        blocks.append(Block("note", f"{len(out_of_grid)} cells of an earlier version of the grid are kept in the run "
                                    "directory but not reported: " + "; ".join(out_of_grid[:20])
                                    + (" …" if len(out_of_grid) > 20 else "")))
    skipped = [f"{s['label']} on {s['scenario']}: {s['reason']}" for r in runs for s in r.manifest.get("skipped", [])]
    if skipped:
        blocks.append(Block("note", "Not planned (the method cannot serve the scenario): " + "; ".join(skipped)))
    blocks.append(Block("nav"))
    return blocks


def _dataset_line(label: str, spec: dict[str, Any]) -> str:
    """A dataset with its sizes: ``mnist (28×28, train 2000, test 500)``; the image size where the registry knows it."""
    try:
        from sepbench.datasets.registry import get_dataset

        options = {k: v for k, v in spec.items() if k not in ("name", "train_size", "test_size")}
        dataset = get_dataset(spec["name"], **options)
        height, width = dataset.image_size
        size = f"{height}×{width}" + (f"×{dataset.channels}" if dataset.channels > 1 else "") + ", "
    except Exception:  # noqa: BLE001 — a plugin not installed here: the sizes the cells recorded still stand
        size = ""
    return f"{label} ({size}train {spec['train_size']}, test {spec['test_size']})"


def _describe(cell: dict[str, Any]) -> str:
    return f"{cell['label']} · {cell['scenario']} · σ={cell['sigma']:g} · seed {cell['seed']}"


def _settings(frame: pd.DataFrame) -> list[tuple[str, float]]:
    return list(dict.fromkeys(zip(frame["scenario"], frame["sigma"], strict=True)))


def at_a_glance(summary: pd.DataFrame, tests: pd.DataFrame,
                test: str = "Wilcoxon signed-rank on per-mixture MSE, p < 0.01") -> list[Block]:
    """Per scenario × σ: the best method by mean MSE and by mean SSIM, and how many it beats significantly
    (``tests``: outcomes of the test named by ``test``); with several seeds its interval is the one over seeds."""
    ci = "ci2" if seed_blocks.several_seeds(summary) else "ci"
    rows, bold = [], set()
    for scenario, sigma in _settings(summary):
        part = summary[(summary["scenario"] == scenario) & (summary["sigma"] == sigma)]
        best = part.loc[part["mse_mean"].idxmin()]
        best_ssim = part.loc[part["ssim_mean"].idxmax()]
        beaten = tests[(tests["scenario"] == scenario) & (tests["sigma"] == sigma) & (tests["a"] == best["entry"])]
        wins = f"{int((beaten['outcome'] == 1).sum())} of {len(part) - 1}" if len(part) > 1 else "–"
        rows.append([scenario, f"{sigma:g}", best["entry"],
                     f"{fmt(best['mse_mean'], 'mse')} [{fmt(best[f'mse_{ci}_low'], 'mse')}, "
                     f"{fmt(best[f'mse_{ci}_high'], 'mse')}]", wins, best_ssim["entry"],
                     fmt(best_ssim["ssim_mean"], "ssim")])
        bold.add((len(rows) - 1, 2))
    columns = ["scenario", "σ", "lowest MSE", "its mean MSE [95% CI]", "significantly better than",
               "highest SSIM", "its mean SSIM"]
    return [Block("h2", "At a glance"), Block("table", table=Table(columns, rows, left=3, bold=bold)),
            Block("note", f"Significance: {test} (section Paired comparison)."
                          + (" Interval: over training seeds (section Summary)." if ci == "ci2" else ""))]


def summary_tables(summary: pd.DataFrame) -> list[Block]:
    """One table per metric: rank, n, mean, 95 % CI, median, IQR, std; each setting's rows ranked by the main
    metric (the same order in every table, so that a method keeps its row); the best mean of each setting in bold."""
    main = TITLES[MAIN_METRIC]
    blocks = [Block("h2", "Summary"),
              Block("note", f"Rows of each setting are ranked by mean {main}, the main metric (rank 1: "
                            f"{'lowest' if LOWER_IS_BETTER[MAIN_METRIC] else 'highest'}); every table keeps that "
                            "order. n = scored images (test mixtures × sources × seeds). 95% CI: percentile "
                            "bootstrap of the mean, 2,000 resamples of test mixtures (seed 0). All numbers are in "
                            "summary.csv. " + seed_blocks.summary_note(summary))]
    order = ranked(summary, MAIN_METRIC)
    for metric in ("mse", "psnr", "ssim"):
        rows, bold = [], set()
        for scenario, sigma in _settings(order):
            part = order[(order["scenario"] == scenario) & (order["sigma"] == sigma)]
            column = part[f"{metric}_mean"]
            best = column.idxmin() if LOWER_IS_BETTER[metric] else column.idxmax()
            for index, row in part.iterrows():
                rows.append(["–" if pd.isna(row["rank"]) else str(row["rank"]), row["entry"], scenario,
                             f"{sigma:g}", str(int(row["n"])), fmt(row[f"{metric}_mean"], metric),
                             f"[{fmt(row[f'{metric}_ci_low'], metric)}, {fmt(row[f'{metric}_ci_high'], metric)}]",
                             fmt(row[f"{metric}_median"], metric), fmt(row[f"{metric}_iqr"], metric),
                             fmt(row[f"{metric}_std"], metric), *seed_blocks.extra_cells(order, row, metric, fmt)])
                if index == best and len(part) > 1:
                    bold.add((len(rows) - 1, 5))
        arrow = "lower is better" if LOWER_IS_BETTER[metric] else "higher is better"
        rank = "rank" if metric == MAIN_METRIC else f"rank ({main})"
        convention = " · mean of per-image PSNR" if metric == "psnr" else ""
        blocks += [Block("h3", f"{TITLES[metric]} ({arrow}){convention}"),
                   Block("table", table=Table([rank, "method", "scenario", "σ", "n", "mean", "95% CI", "median",
                                               "IQR", "std", *seed_blocks.extra_columns(order, metric)], rows,
                                              left=3, bold=bold))]
    return blocks


def wilcoxon_tables(tests: pd.DataFrame, entries: Sequence[str]) -> list[Block]:
    """Per setting a matrix (row method vs column method): win / loss / – with the p-value."""
    blocks: list[Block] = []
    for scenario, sigma in _settings(tests):
        matrix = outcome_matrix(tests, scenario, sigma, entries)
        part = tests[(tests["scenario"] == scenario) & (tests["sigma"] == sigma)].set_index(["a", "b"])
        rows = []
        for a in matrix.index:
            cells = [a]
            for b in matrix.columns:
                if a == b:
                    cells.append("")
                elif math.isnan(matrix.at[a, b]):
                    cells.append("not paired")
                else:
                    word = {1.0: "win", -1.0: "loss", 0.0: "–"}[matrix.at[a, b]]
                    cells.append(f"{word} (p={fmt(part.at[(a, b), 'p'], 'p')})")
            rows.append(cells)
        blocks += [Block("h3", f"{scenario} · σ = {sigma:g}"),
                   Block("table", table=Table(["row vs column", *matrix.columns], rows, left=1))]
    if any("not paired" in cells for block in blocks if block.table is not None for cells in block.table.rows):
        blocks.append(Block("note", NOT_PAIRED))
    return blocks


NOT_PAIRED = ("not paired: the two entries were not scored on the same test mixtures (their test keys differ: "
              "other test pairs or test size, another forward model under the scenario's name, or a cell recorded "
              "before cells carried the digest of their test mixtures, `test_fingerprint`, which pairs with no "
              "newer cell until it is run again), so no paired test exists.")


def recognition_blocks(summary: pd.DataFrame, ceilings: dict[tuple[str, float], dict[str, float]],
                       classifiers: dict[str, dict[str, Any]], testsets: dict[str, str],
                       unlabelled: Sequence[str] = ()) -> list[Block]:
    """Recognised rate (95 % CI) per method (rows) and setting (columns), and the ground truth's ceiling of each
    setting (``ceilings``: setting → ceiling key → rate); a note per dataset's classifier, and one for the datasets
    that have no labels (``unlabelled``), whose cells are left out."""
    digits = set(classifiers) <= {"mnist"} and not unlabelled
    blocks = [Block("h2", "Digit recognisability" if digits else "Recognisability")]
    notes = []
    if unlabelled:
        notes.append(f"Left out for {', '.join(unlabelled)}: {'it has' if len(unlabelled) == 1 else 'they have'} "
                     "no labels, so no classifier can say whether a separated source is still recognisable.")
    if summary["recognised_rate"].isna().all():
        if not unlabelled:
            notes.append("Not available: the cells of this run did not record it (runs made before it existed, or "
                         "a classifier that could not be had).")
        return blocks + [Block("p", " ".join(notes))]
    settings = _settings(summary)
    columns = ["method", *(f"{scenario} σ={sigma:g}" for scenario, sigma in settings)]
    rows = []
    for entry in dict.fromkeys(summary["entry"]):
        cells = [entry]
        for scenario, sigma in settings:
            match = summary[(summary["entry"] == entry) & (summary["scenario"] == scenario)
                            & (summary["sigma"] == sigma)]
            if match.empty or pd.isna(match["recognised_rate"].iloc[0]):
                cells.append("–")
                continue
            row = match.iloc[0]
            cells.append(f"{row['recognised_rate']:.3f} ({row['recognised_ci_low']:.2f}–"
                         f"{row['recognised_ci_high']:.2f})")
        rows.append(cells)
    keys = list(dict.fromkeys(key for setting in settings for key in ceilings.get(setting, {})))
    if keys and max(len(ceilings.get(setting, {})) for setting in settings) == 1:  # one ceiling per column
        rows.append(["ground truth (ceiling)"] + [next((f"{v:.3f}" for v in ceilings.get(setting, {}).values()), "–")
                                                  for setting in settings])
    else:
        for key in keys:
            rows.append([f"ground truth ({testsets.get(key, key)})"]
                        + [f"{ceilings[setting][key]:.3f}" if key in ceilings.get(setting, {}) else "–"
                           for setting in settings])
    notes.insert(0, "A test mixture counts as recognised when a small CNN trained on the training split of its "
                    "sources' dataset reads its outputs as its true labels, in any order. The ground truth's own rate "
                    "(the classifier applied to the true images of the same test mixtures) is the ceiling. In "
                    "brackets: 95% bootstrap interval.")
    for dataset, info in classifiers.items():
        if "error" in info:
            notes.append(f"{dataset}: ceiling unavailable here ({info['error']}).")
        elif info.get("test_accuracy") is not None:
            images = info.get("test_images", 10000 if dataset == "mnist" else None)
            what = "MNIST test digits" if dataset == "mnist" else f"{dataset} test images"
            notes.append(f"Classifier accuracy on the {f'{images:,} ' if images else ''}{what}: "
                         f"{info['test_accuracy']:.2%}.")
    return blocks + [Block("note", " ".join(notes)), Block("table", table=Table(columns, rows, left=1))]


def learning_blocks(status: pd.DataFrame) -> list[Block]:
    """Per learned cell: epochs, training seconds, last and best validation loss, and whether it converged."""
    rows = []
    for _, row in status.iterrows():
        change = "–" if pd.isna(row["last_change"]) else f"{row['last_change']:+.2%}"
        rows.append([row["entry"], row["scenario"], f"{row['sigma']:g}", str(row["seed"]), str(row["epochs"]),
                     _seconds(row["seconds"]), f"{row['last_val_loss']:.4g}", f"{row['best_val_loss']:.4g}", change,
                     "converged" if row["converged"] else "not converged"])
    columns = ["method", "scenario", "σ", "seed", "epochs", "training s", "last val. loss", "best val. loss",
               "last epoch", "status"]
    blocks = [Block("table", table=Table(columns, rows, left=2))]
    falling = list(dict.fromkeys(status.loc[~status["converged"], "entry"]))
    if falling:
        blocks.insert(0, Block("warn", "Not converged: the validation loss still fell in the last epoch (by more "
                                       "than 0.1 %, or there was only one epoch), so a longer budget may change "
                                       "the ranking: " + ", ".join(falling) + "."))
    return blocks


def _seconds(value: Any) -> str:
    return "–" if pd.isna(value) else (f"{value:,.1f}" if value >= 1 else f"{value:.2g}")


def cost_blocks(cost: pd.DataFrame) -> list[Block]:
    """Parameters, training time and separation throughput per method, from the cells' json files."""
    rows = []
    for _, row in cost.iterrows():
        params, speed = row["n_parameters"], row["mixtures_per_s"]
        trains = bool(row["trains"])
        rows.append([row["entry"], row["method"], str(int(row["cells"])),
                     "–" if pd.isna(params) else f"{int(params):,}",
                     _seconds(row["fit_seconds"]) if trains else "no training",
                     _seconds(row["fit_seconds_max"]) if trains else "",
                     "–" if pd.isna(speed) else (f"{speed:,.0f}" if speed >= 100 else f"{speed:.3g}"),
                     row["device"], row.get("precision", "–")])
    columns = ["method", "implementation", "cells", "parameters", "training s (mean per cell)",
               "training s (max)", "mixtures/s (median)", "device", "precision"]
    return [Block("h2", "Cost"), Block("table", table=Table(columns, rows, left=2))]


def notes(several: bool) -> list[Block]:
    """How the numbers were made, in a few lines."""
    lines = [
        "Scores are per test image under the best assignment of outputs to sources (lowest summed MSE); PSNR "
        "= −10·log10(MSE) with data range 1; SSIM as scikit-image's structural_similarity(data_range=1).",
        "Intervals: percentile bootstrap of the mean over test mixtures (each mixture = mean over its "
        "sources and over seeds), 2,000 resamples, seed 0. The spread between training seeds is not part of it.",
        "Paired comparison: per-mixture MSE (mean over its sources, averaged over seeds), paired by "
        "test-mixture index; two-sided Wilcoxon signed-rank (scipy.stats.wilcoxon); a win is p < 0.01 with "
        "a negative median difference (row − column). No correction for multiple comparisons.",
        "Example separations use each method's first seed; outputs are shown in the order the scorer "
        "assigned them to the sources.",
    ]
    if several:
        lines.append("Comparison: methods are named 'run: label'; entries of different runs are paired only "
                     "when they were scored on the same test set (same dataset and number of test mixtures).")
    return [Block("h2", "Notes")] + [Block("note", line) for line in lines]
