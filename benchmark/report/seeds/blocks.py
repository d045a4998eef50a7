"""What the page says about seeds: the summary tables' extra columns, and the seed-aware paired comparison."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from sepbench.report.page import Block, Table


def several_seeds(summary: pd.DataFrame) -> bool:
    """Whether any entry of the summary has two or more training seeds."""
    return "n_seeds" in summary and bool((summary["n_seeds"].fillna(1) > 1).any())


def extra_columns(summary: pd.DataFrame, metric: str) -> list[str]:
    """Headers of the columns a summary table gains after its own: rank interval, seeds, and with several seeds
    the seed std and the interval over seeds; the PSNR table the PSNR of the mean MSE."""
    columns = ["rank 95%", "seeds"]
    if several_seeds(summary):
        columns += ["seed std", "95% CI over seeds"]
    if metric == "psnr":
        columns.append("PSNR of mean MSE")
    return columns


def extra_cells(summary: pd.DataFrame, row: pd.Series, metric: str, fmt: Callable[[Any, str], str]) -> list[str]:
    """The cells of :func:`extra_columns` for one summary row (``–`` where the summary lacks a number)."""
    low, high, seeds = row.get("rank_low"), row.get("rank_high"), row.get("n_seeds")
    cells = ["–" if pd.isna(low) or pd.isna(high) else f"{int(low)}–{int(high)}",
             "–" if pd.isna(seeds) else ("1 seed" if int(seeds) == 1 else f"{int(seeds)} seeds")]
    if several_seeds(summary):
        cells += [fmt(row.get(f"{metric}_seed_std"), metric),
                  f"[{fmt(row.get(f'{metric}_ci2_low'), metric)}, {fmt(row.get(f'{metric}_ci2_high'), metric)}]"]
    if metric == "psnr":
        cells.append(fmt(row.get("psnr_of_mean_mse"), "psnr"))
    return cells


def summary_note(summary: pd.DataFrame) -> str:
    """The summary section's sentence on seeds, rank intervals and the PSNR conventions."""
    text = ("rank 95%: the 95% interval of the rank by mean MSE over 2,000 joint bootstrap resamples (the same test "
            "mixtures for every entry of a test set, training seeds resampled per entry, ties broken at random): "
            "adjacent ranks whose intervals overlap cannot be told apart. ")
    if several_seeds(summary):
        text += ("An entry's mean is over its training seeds; seed std: the standard deviation of its per-seed means; "
                 "95% CI over seeds: mean ± t·se, se² = (variance of the seed means)/k + (variance of the "
                 "mixture means)/n, Satterthwaite's degrees of freedom (a percentile bootstrap over 2–5 seeds "
                 "under-covers: docs/statistics.md); for a 1-seed row it is the mixture bootstrap, blind to seed "
                 "luck. ")
    else:
        text += "Every entry has 1 training seed: the intervals resample test mixtures only, not seed luck. "
    return text + ("PSNR: the table's mean is the mean of per-image PSNR; 'PSNR of mean MSE' is −10·log10 of the "
                   "mean MSE over all images (the other convention in the literature).")


def seed_test_blocks(tests: pd.DataFrame, entries: Sequence[str], matrix: Callable[..., pd.DataFrame],
                     fmt: Callable[[Any, str], str]) -> list[Block]:
    """Per setting a matrix (row vs column): win / loss / – with Holm's adjusted p of the seed-aware test."""
    blocks = [Block("h3", "Seed-aware comparison (Holm-corrected)"),
              Block("note", "Some entries have several training seeds: does the row method have significantly lower "
                            "mean MSE than the column method, counting the seed-to-seed spread? Paired over the "
                            "shared test mixtures; t test on the mean difference with se² = seed-mean variance of "
                            "each entry / its seeds + variance of the per-mixture difference / n (Satterthwaite's "
                            "df); Holm's correction over the pairs of each setting; a win is adjusted p < 0.01."
                            " The two-level bootstrap tail probability is in seed_tests.csv (p_bootstrap): it "
                            "calls equal entries different too often with few seeds (docs/statistics.md).")]
    for scenario, sigma in dict.fromkeys(zip(tests["scenario"], tests["sigma"], strict=True)):
        outcomes = matrix(tests, scenario, sigma, entries)
        part = tests[(tests["scenario"] == scenario) & (tests["sigma"] == sigma)].set_index(["a", "b"])
        rows = []
        for a in outcomes.index:
            cells = [a]
            for b in outcomes.columns:
                value = outcomes.at[a, b]
                if a == b:
                    cells.append("")
                elif pd.isna(value):
                    cells.append("not paired")
                else:
                    word = {1.0: "win", -1.0: "loss", 0.0: "–"}[value]
                    cells.append(f"{word} (p={fmt(part.at[(a, b), 'p_holm'], 'p')})")
            rows.append(cells)
        blocks += [Block("h3", f"{scenario} · σ = {sigma:g} · seeds"),
                   Block("table", table=Table(["row vs column", *outcomes.columns], rows, left=1))]
    return blocks
