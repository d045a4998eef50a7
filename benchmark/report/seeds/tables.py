"""Seed-aware columns of the summary and the seed-aware paired comparison, from a report's rows.

Per entry of a setting, a ``(seeds, mixtures)`` matrix of per-mixture scores (the mean over a mixture's sources);
mixtures missing for one of its seeds are left out of that entry's matrix.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from sepbench.report.seeds.bootstrap import (
    holm,
    joint_means,
    paired_t,
    rank_intervals,
    seed_t_interval,
    tail_probability,
)

METRICS = ("mse", "psnr", "ssim")
GROUP = ["run", "label", "dataset", "scenario", "sigma"]
SETTING = ["scenario", "sigma"]
ALPHA = 0.01
SEED_COLUMNS = ["n_seeds", "psnr_of_mean_mse", "rank_low", "rank_high",
                *(f"{m}_{s}" for m in METRICS for s in ("seed_std", "ci2_low", "ci2_high"))]


def seed_matrices(rows: pd.DataFrame, metric: str, by: Sequence[str] = GROUP) -> dict[tuple, pd.DataFrame]:
    """Per group of ``by``: a frame (rows: seeds, columns: mixture index) of ``metric`` averaged over sources."""
    per = rows.groupby([*by, "seed", "mixture"], sort=False)[metric].mean()
    return {key: part.droplevel(list(range(len(by)))).unstack("mixture").dropna(axis=1)
            for key, part in per.groupby(level=list(range(len(by))), sort=False)}


def align(frames: Sequence[pd.DataFrame], groups: Sequence[str]) -> list[np.ndarray]:
    """The matrices of ``frames`` (seeds × mixture index), each test set's (equal ``groups``) reduced to the
    mixtures all its entries have, in one order: what a shared resample of mixtures needs."""
    shared: dict[str, pd.Index] = {}
    for frame, group in zip(frames, groups, strict=True):
        shared[group] = shared[group].intersection(frame.columns) if group in shared else frame.columns
    return [frame[shared[group]].to_numpy() for frame, group in zip(frames, groups, strict=True)]


def seed_columns(summary: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """``summary`` (one row per run × label × dataset × scenario × σ, with ``{metric}_ci_*``) with the seed-aware
    columns: n seeds, the seed-to-seed std of per-seed means, the interval over seeds (``ci2``; one seed: the
    mixture bootstrap, ``ci``), PSNR of the mean MSE, and the 95 % interval of the rank by mean MSE."""
    matrices = {metric: seed_matrices(rows, metric) for metric in METRICS}
    mixture_ci = summary.set_index(GROUP)
    psnr = -10 * np.log10(rows.groupby(GROUP, sort=False)["mse"].mean())
    found: dict[tuple, dict[str, float]] = {}
    for key, matrix in matrices["mse"].items():
        found[key] = {"n_seeds": len(matrix), "psnr_of_mean_mse": float(psnr[key])}
    for metric in METRICS:
        for key, matrix in matrices[metric].items():
            values = matrix.to_numpy()
            several = len(values) > 1
            low, high = seed_t_interval(values) if several else (mixture_ci.loc[key, f"{metric}_ci_low"],
                                                                 mixture_ci.loc[key, f"{metric}_ci_high"])
            found[key].update({f"{metric}_seed_std": values.mean(axis=1).std(ddof=1) if several else np.nan,
                               f"{metric}_ci2_low": low, f"{metric}_ci2_high": high})
    testsets = rows.groupby(GROUP, sort=False)["testset"].first()
    settings: dict[tuple, list[tuple]] = {}
    for key in matrices["mse"]:
        settings.setdefault((key[GROUP.index("scenario")], key[GROUP.index("sigma")]), []).append(key)
    for keys in settings.values():
        groups = [testsets[k] for k in keys]
        low, high = rank_intervals(align([matrices["mse"][k] for k in keys], groups),
                                   [list(dict.fromkeys(groups)).index(g) for g in groups])
        for key, lo, hi in zip(keys, low, high, strict=True):
            found[key].update({"rank_low": lo, "rank_high": hi})
    extra = pd.DataFrame([{**dict(zip(GROUP, key, strict=True)), **values} for key, values in found.items()],
                         columns=[*GROUP, *SEED_COLUMNS])
    for column in ("n_seeds", "rank_low", "rank_high"):
        extra[column] = extra[column].astype("Int64")
    return summary.merge(extra, on=GROUP, how="left")


def seed_tests(rows: pd.DataFrame, entries: Sequence[str], alpha: float = ALPHA) -> pd.DataFrame:
    """Every pair of entries per setting, both orders (a, b): mean MSE difference a − b, n mixtures, seeds of
    each, ``p_t`` (the seed-aware t test, see :func:`paired_t`), ``p_bootstrap`` (the two-level bootstrap tail),
    ``p_holm`` (Holm over the setting's pairs, from ``p_t``) and ``outcome`` (+1: a significantly lower, −1:
    higher, 0: not, NaN: not on the same test set)."""
    matrices = seed_matrices(rows, "mse", by=[*SETTING, "entry"])
    tests = rows.groupby([*SETTING, "entry"], sort=False)["testset"].first()
    records = []
    for scenario, sigma in dict.fromkeys(key[:2] for key in matrices):
        present = [e for e in entries if (scenario, sigma, e) in matrices]
        groups = [tests[(scenario, sigma, e)] for e in present]
        aligned = dict(zip(present, align([matrices[(scenario, sigma, e)] for e in present], groups), strict=True))
        means = joint_means([aligned[e] for e in present], [list(dict.fromkeys(groups)).index(g) for g in groups])
        pairs = []
        for (i, a), (j, b) in itertools.combinations(enumerate(present), 2):
            xa, xb = aligned[a], aligned[b]
            same = groups[i] == groups[j] and xa.shape[1] > 1
            delta, p_t = paired_t(xa, xb) if same else (np.nan, np.nan)
            p_boot = tail_probability(means[:, i] - means[:, j]) if same else np.nan
            pairs.append({"scenario": scenario, "sigma": sigma, "a": a, "b": b, "n": xa.shape[1] if same else np.nan,
                          "seeds_a": len(xa), "seeds_b": len(xb), "mean_diff": delta, "p_t": p_t,
                          "p_bootstrap": p_boot})
        for pair, adjusted in zip(pairs, holm([p["p_t"] for p in pairs]), strict=True):
            pair["p_holm"] = adjusted
            pair["outcome"] = np.nan if np.isnan(adjusted) else (
                -float(np.sign(pair["mean_diff"])) if adjusted < alpha else 0.0)
            records.append(pair)
            records.append({**pair, "a": pair["b"], "b": pair["a"], "seeds_a": pair["seeds_b"],
                            "seeds_b": pair["seeds_a"], "mean_diff": -pair["mean_diff"],
                            "outcome": 0.0 - pair["outcome"]})
    columns = ["scenario", "sigma", "a", "b", "n", "seeds_a", "seeds_b", "mean_diff", "p_t", "p_bootstrap",
               "p_holm", "outcome"]
    return pd.DataFrame.from_records(records, columns=columns)
