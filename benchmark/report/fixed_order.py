"""The fixed-order score beside the best-assignment one, for scenarios whose sources each come from their own set.

There output s is meant for source s (``sources: [mnist, fashion-mnist]``): a method that learned the roles has
equal scores under both; one whose outputs come in any order scores worse in fixed order. Only such scenarios
have the ``*_fixed`` columns (:data:`sepbench.metrics.FIXED_COLUMNS`); without them this section is absent.
"""

from __future__ import annotations

import pandas as pd

from sepbench.metrics import FIXED_COLUMNS
from sepbench.report.page import Block, Table
from sepbench.report.summary import GROUP

METRICS = ("mse", "psnr", "ssim")


def fixed_order_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per run × label × scenario × σ with fixed-order columns: the mean of each metric under the best assignment
    and in fixed order, and the share of test mixtures whose best assignment is the identity."""
    if not set(FIXED_COLUMNS) <= set(rows) or rows["mse_fixed"].isna().all():
        return pd.DataFrame()
    part = rows[rows["mse_fixed"].notna()].assign(_identity=lambda f: f["perm"] == f["source"])
    columns = [c for m in METRICS for c in (m, f"{m}_fixed")]
    table = part.groupby(GROUP, sort=False)[columns].mean()
    identity = part.groupby([*GROUP, "seed", "mixture"], sort=False)["_identity"].all()
    table["identity_share"] = identity.groupby(level=list(range(len(GROUP))), sort=False).mean()
    table.columns = [f"{c}_mean" if c in columns else c for c in table.columns]
    return table.reset_index()


def fixed_order_blocks(table: pd.DataFrame, entries: dict[tuple[str, str], str]) -> list[Block]:
    """A short table: per entry and setting, MSE, PSNR and SSIM under the best assignment and in fixed order."""
    if table.empty:
        return []
    from sepbench.report.content import fmt

    rows = [[entries.get((r["run"], r["label"]), r["label"]), r["scenario"], f"{r['sigma']:g}",
             *[fmt(r[f"{c}_mean"], m) for m in METRICS for c in (m, f"{m}_fixed")],
             fmt(r["identity_share"], "rate")] for _, r in table.iterrows()]
    columns = ["method", "scenario", "σ", "MSE best", "MSE fixed", "PSNR best", "PSNR fixed", "SSIM best",
               "SSIM fixed", "identity share"]
    return [Block("h2", "Fixed order"),
            Block("note", "Scenarios whose sources each come from their own dataset: output s is meant for source s. "
                          "'best': under the best assignment of outputs to sources (as everywhere else in this "
                          "report); 'fixed': output s against source s. Identity share: test mixtures whose best "
                          "assignment is the fixed order (1: the method learned the roles). Means over test images; "
                          "every value is in fixed_order.csv."),
            Block("table", table=Table(columns, rows, left=3))]
