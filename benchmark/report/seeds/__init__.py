"""Seed-aware statistics of a report: an entry's mean over training seeds with an interval that carries the seed
spread, the seed-to-seed std, PSNR of the mean MSE, rank intervals, and the paired comparison with Holm's correction.

Public face: :func:`seed_columns` (summary columns), :func:`seed_tests` (paired comparison), and the numerics in
:mod:`.bootstrap` (:func:`seed_t_interval`, :func:`percentile_interval`, :func:`paired_t`, :func:`paired_bootstrap`,
:func:`rank_intervals`, :func:`holm`). Why the t interval: docs/statistics.md (coverages measured by
:mod:`.coverage`).
"""

from sepbench.report.seeds.bootstrap import (
    holm,
    paired_bootstrap,
    paired_t,
    percentile_interval,
    rank_intervals,
    seed_t_interval,
    two_level_means,
)
from sepbench.report.seeds.tables import SEED_COLUMNS, seed_columns, seed_tests

__all__ = ["SEED_COLUMNS", "holm", "paired_bootstrap", "paired_t", "percentile_interval", "rank_intervals",
           "seed_columns", "seed_t_interval", "seed_tests", "two_level_means"]
