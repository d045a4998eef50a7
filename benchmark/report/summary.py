"""The summary table: per run × method label × scenario × σ — n, mean, median, IQR, std, 95 % bootstrap CI.

The bootstrap resamples *test mixtures* (each the mean over its sources and seeds), not rows: the two
sources of a mixture are scored from one separation and are not independent. The mean of the mixture
means equals the mean of the rows, since every mixture has the same number of rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from sepbench.report.load import RunData, entry_names

METRICS = ("mse", "psnr", "ssim")
#: what the page ranks entries by in every scenario: the paper's headline, and the metric the scorer assigns on
MAIN_METRIC = "mse"
GROUP = ["run", "label", "dataset", "scenario", "sigma"]  # a scenario has one dataset: ``dataset`` names it
N_RESAMPLES, LEVEL, BOOT_SEED = 2000, 0.95, 0
STATS = ("mean", "median", "iqr", "std", "ci_low", "ci_high")


def bootstrap_ci(values: np.ndarray, n_resamples: int = N_RESAMPLES, level: float = LEVEL,
                 seed: int = BOOT_SEED, chunk_elements: int = 2_000_000) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of the mean of ``values (n, k)`` (k columns at once, same resamples), vectorised.

    Resamples are drawn in chunks so that memory stays near ``chunk_elements`` indices whatever ``n``.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        low, high = bootstrap_ci(values[:, None], n_resamples, level, seed, chunk_elements)
        return low[0], high[0]
    n = len(values)
    if n == 0:
        return np.full(values.shape[1], np.nan), np.full(values.shape[1], np.nan)
    rng = np.random.default_rng(seed)
    per_chunk = max(1, chunk_elements // n)
    means = []
    for start in range(0, n_resamples, per_chunk):
        idx = rng.integers(0, n, size=(min(per_chunk, n_resamples - start), n))
        means.append(values[idx].mean(axis=1))
    stacked = np.concatenate(means)
    tail = (1.0 - level) / 2.0
    return np.quantile(stacked, tail, axis=0), np.quantile(stacked, 1.0 - tail, axis=0)


def mixture_means(rows: pd.DataFrame, columns: Sequence[str], by: Sequence[str] = GROUP) -> pd.DataFrame:
    """One row per group × test mixture: ``columns`` averaged over the mixture's sources and the seeds."""
    return rows.groupby([*by, "mixture"], sort=False)[list(columns)].mean().reset_index()


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """The summary table (one row per run × label × scenario × σ, with its dataset); ``recognised`` is a per-mixture
    rate."""
    grouped = rows.groupby(GROUP, sort=False)
    table = pd.DataFrame({"n": grouped.size()})
    for metric in METRICS:
        column = grouped[metric]
        table[f"{metric}_mean"] = column.mean()
        table[f"{metric}_median"] = column.median()
        table[f"{metric}_iqr"] = column.quantile(0.75) - column.quantile(0.25)
        table[f"{metric}_std"] = column.std()
        table[f"{metric}_ci_low"] = np.nan
        table[f"{metric}_ci_high"] = np.nan
    if "ssim_gauss" in rows:  # the Gaussian-window convention (cells of an older sepbench have none: NaN)
        table["ssim_gauss_mean"] = grouped["ssim_gauss"].mean()
    table["recognised_rate"] = np.nan
    table["recognised_ci_low"] = np.nan
    table["recognised_ci_high"] = np.nan
    per_mixture = mixture_means(rows, [*METRICS, "recognised"])
    for key, group in per_mixture.groupby(GROUP, sort=False):
        low, high = bootstrap_ci(group[list(METRICS)].to_numpy())
        for i, metric in enumerate(METRICS):
            table.loc[key, [f"{metric}_ci_low", f"{metric}_ci_high"]] = low[i], high[i]
        flags = group["recognised"].to_numpy()
        if not np.isnan(flags).any():
            low, high = bootstrap_ci(flags)
            table.loc[key, ["recognised_rate", "recognised_ci_low", "recognised_ci_high"]] = flags.mean(), low, high
    return table.reset_index()


def ranked(summary: pd.DataFrame, metric: str = MAIN_METRIC) -> pd.DataFrame:
    """The summary with ``rank`` (1: best mean ``metric``; ties share the better rank), each (scenario, σ) setting
    in the order first seen and its rows from best to worst."""
    ascending = metric != "ssim" and metric != "psnr"  # MSE: lower is better; PSNR and SSIM: higher is
    column = summary[f"{metric}_mean"]
    rank = column.groupby([summary["scenario"], summary["sigma"]], sort=False).rank(method="min",
                                                                                    ascending=ascending)
    setting = summary.groupby(["scenario", "sigma"], sort=False).ngroup()
    return (summary.assign(rank=rank.astype("Int64"), _setting=setting)
            .sort_values(["_setting", "rank"], kind="stable").drop(columns="_setting"))


def cost_table(runs: Sequence[RunData], several: bool) -> pd.DataFrame:
    """Per run × method label: parameters, training time, separation throughput, device and precision (training
    and separation), from the cells' json files."""
    records = []
    for run in runs:
        for meta in run.meta.values():
            config = meta["config"]
            records.append({"run": run.name, "label": config["label"], "method": config["method"],
                            "trains": config.get("budget") is not None,
                            "n_parameters": meta.get("n_parameters"), "fit_seconds": meta.get("fit_seconds"),
                            "separate_seconds": meta.get("separate_seconds"),
                            "mixtures_per_s": meta.get("mixtures_per_s"), "device": _device(meta),
                            "precision": meta.get("precision")})  # resolved: fp32 | bf16; None without a network
    frame = pd.DataFrame.from_records(records)
    table = frame.groupby(["run", "label"], sort=False).agg(
        method=("method", "first"), trains=("trains", "any"), cells=("method", "size"),
        n_parameters=("n_parameters", "max"),
        fit_seconds=("fit_seconds", "mean"), fit_seconds_max=("fit_seconds", "max"),
        mixtures_per_s=("mixtures_per_s", "median"),
        device=("device", lambda d: ", ".join(sorted(set(map(str, d))))),
        precision=("precision", lambda p: ", ".join(sorted({str(x) for x in p if isinstance(x, str)})) or "–"),
    ).reset_index()
    table.insert(0, "entry", entry_names(table, several))
    return table


def _device(meta: dict) -> str:
    """A GPU by its model (``NVIDIA H200``), the CPU as ``cpu``: what the cost table shows."""
    device = str(meta.get("device", "?"))
    return str(meta.get("device_name") or device) if device.startswith("cuda") else device
