"""Paired comparisons (Wilcoxon signed-rank on per-mixture MSE) and the recognisability ceiling.

A mixture's MSE is the mean over its sources, averaged over seeds when a method has several; two
entries are paired by test-mixture index, and only when they were scored on the same test set.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from sepbench.datasets import dataset_key_of
from sepbench.report.load import RunData

ALPHA = 0.01
SETTING = ["scenario", "sigma"]
log = logging.getLogger("sepbench.report")


def per_mixture_mse(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per scenario × σ × entry × mixture: MSE averaged over the sources and over seeds."""
    return rows.groupby([*SETTING, "testset", "entry", "mixture"], sort=False)["mse"].mean().reset_index()


def paired_test(a: np.ndarray, b: np.ndarray, alpha: float = ALPHA) -> dict[str, float]:
    """Two-sided Wilcoxon signed-rank test of ``a - b``; outcome +1 when ``a`` is significantly lower."""
    diff = a - b
    if len(diff) == 0 or not np.any(diff):
        return {"n": float(len(diff)), "median_diff": 0.0, "statistic": np.nan, "p": 1.0, "outcome": 0.0}
    result = wilcoxon(a, b)
    p = float(result.pvalue)
    direction = np.sign(np.median(diff)) or np.sign(np.mean(diff))
    outcome = -float(direction) if p < alpha else 0.0
    return {"n": float(len(diff)), "median_diff": float(np.median(diff)), "statistic": float(result.statistic),
            "p": p, "outcome": outcome}


def pairwise_wilcoxon(rows: pd.DataFrame, entries: Sequence[str], alpha: float = ALPHA) -> pd.DataFrame:
    """Every ordered pair (a, b) of entries in every scenario × σ: n, median difference, statistic, p, outcome.

    ``outcome`` is +1 where a has significantly lower MSE than b (a "win"), −1 for a loss, 0 otherwise;
    NaN where the two were not scored on the same test set.
    """
    per_mixture = per_mixture_mse(rows)
    records = []
    for (scenario, sigma), group in per_mixture.groupby(SETTING, sort=False):
        series = {entry: g.set_index("mixture")["mse"] for entry, g in group.groupby("entry", sort=False)}
        tests = {entry: g["testset"].iloc[0] for entry, g in group.groupby("entry", sort=False)}
        present = [e for e in entries if e in series]
        for a, b in itertools.combinations(present, 2):
            if tests[a] != tests[b]:
                result = {"n": np.nan, "median_diff": np.nan, "statistic": np.nan, "p": np.nan, "outcome": np.nan}
            else:
                joined = pd.concat([series[a], series[b]], axis=1, join="inner", keys=["a", "b"])
                result = paired_test(joined["a"].to_numpy(), joined["b"].to_numpy(), alpha)
            records.append({"scenario": scenario, "sigma": sigma, "a": a, "b": b, **result})
            flipped = {**result, "median_diff": -result["median_diff"], "outcome": 0.0 - result["outcome"]}
            records.append({"scenario": scenario, "sigma": sigma, "a": b, "b": a, **flipped})
    columns = ["scenario", "sigma", "a", "b", "n", "median_diff", "statistic", "p", "outcome"]
    return pd.DataFrame.from_records(records, columns=columns)


def outcome_matrix(tests: pd.DataFrame, scenario: str, sigma: float, entries: Sequence[str]) -> pd.DataFrame:
    """Square matrix (rows a, columns b) of outcomes for one setting; NaN on the diagonal and where untested."""
    part = tests[(tests["scenario"] == scenario) & (tests["sigma"] == sigma)]
    present = [e for e in entries if e in set(part["a"]) | set(part["b"])]
    matrix = part.pivot(index="a", columns="b", values="outcome") if len(part) else pd.DataFrame()
    return matrix.reindex(index=present, columns=present).astype(float)


def recognition_ceiling(runs: Sequence[RunData], rows: pd.DataFrame, data_dir: str | Path | None = None
                        ) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """Per test set and number of sources (:meth:`RunData.ceiling_key`): the fraction of test mixtures — the cells'
    own pairs — whose *true* images their dataset's classifier reads correctly; and per dataset (as the report names
    it) its classifier's description, or ``{"error": ...}`` where it cannot be had here (the page then says so).

    Computed only for the cells whose rows carry recognisability.
    """
    from sepbench.grid_model import DatasetSpec
    from sepbench.recognise import load_classifier, truth_recognised
    from sepbench.sources import load_sources

    scored = rows.loc[rows["recognised"].notna(), ["run", "cell"]].drop_duplicates()
    wanted = set(zip(scored["run"], scored["cell"], strict=True))
    ceiling: dict[str, float] = {}
    classifiers: dict[str, dict[str, Any]] = {}
    for run in runs:
        for cell_id, meta in run.meta.items():
            key, dataset = run.ceiling_key(cell_id), run.dataset(cell_id)
            if (run.name, cell_id) not in wanted or key in ceiling or "error" in classifiers.get(dataset, {}):
                continue
            config = meta["config"]
            spec = config["dataset"]
            options = {k: v for k, v in spec.items() if k not in ("name", "train_size", "test_size")}
            try:
                sources = load_sources(data_dir, DatasetSpec(spec["name"], spec["train_size"], spec["test_size"],
                                                             options))
                classifiers.setdefault(dataset, dict(load_classifier(data_dir, sources).info))
                flags = truth_recognised(sources, spec["test_size"], config["test_mixtures"],
                                         len(config["scenario"]["weights"][0]), dataset_key_of(spec), data_dir,
                                         config.get("test_pairs", "random"))
                ceiling[key] = float(flags.mean())
            except Exception as exc:  # the rest of the report stands without this ceiling
                log.warning("recognisability ceiling unavailable on %s: %s: %s", dataset, type(exc).__name__, exc)
                classifiers[dataset] = {"error": f"{type(exc).__name__}: {exc}"}
    return ceiling, classifiers
