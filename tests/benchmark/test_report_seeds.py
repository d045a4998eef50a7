"""Seed-aware statistics of the report: the two-level resampling, the interval's coverage, Holm's correction, rank
intervals, and a report on a real tiny run with two training seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sepbench.grid import parse_grid
from sepbench.report import write_report
from sepbench.report.seeds import holm, paired_t, rank_intervals, seed_t_interval
from sepbench.report.seeds.bootstrap import (
    joint_means,
    mixture_weights,
    resampled_means,
    seed_weights,
    tail_probability,
)
from sepbench.report.seeds.coverage import false_positive_rate, interval_coverage
from sepbench.runner import run_grid
from tests.conftest import TINY_GRID

GRID = {**TINY_GRID, "name": "report-seeds", "seeds": [0, 1], "noise": [0.1], "test": {"mixtures": 40},
        "scenarios": {"single": TINY_GRID["scenarios"]["single"]},
        "methods": ["average", {"method": "fcsae", "params": {"hidden": 64}},
                    {"method": "fcsae", "label": "fcsae-pit", "params": {"hidden": 64, "loss": "pit"}}]}


def test_two_level_resample_equals_the_direct_mean_of_drawn_seeds_and_mixtures():
    rng = np.random.default_rng(3)
    scores = rng.normal(0.03, 0.01, size=(3, 25))
    draw = np.random.default_rng(7)
    mix, seeds = mixture_weights(draw, 25, 50), seed_weights(draw, 3, 50)
    fast = resampled_means(scores, mix, seeds)
    # the same resamples as index lists: seed s taken seeds[b, s]·3 times, mixture m taken mix[b, m]·25 times
    for b in range(50):
        seed_idx = np.repeat(np.arange(3), np.rint(seeds[b] * 3).astype(int))
        mix_idx = np.repeat(np.arange(25), np.rint(mix[b] * 25).astype(int))
        assert len(seed_idx) == 3 and len(mix_idx) == 25
        assert fast[b] == pytest.approx(scores[seed_idx][:, mix_idx].mean(), rel=1e-12)
    # one seed: the ordinary bootstrap over mixtures (seed weights all 1)
    assert np.all(seed_weights(draw, 1, 10) == 1.0)


@pytest.mark.parametrize("k", [3, 5])
def test_interval_over_seeds_covers_a_known_mean(k):
    coverage = interval_coverage(k, draws=300, n=60, n_resamples=200, seed=k)
    assert 0.91 <= coverage["t"] <= 0.99, coverage  # nominal 95 %, 300 draws: ±2.5 % is two standard errors
    if k == 3:  # why the report does not use the percentile bootstrap over 3 seeds
        assert coverage["bootstrap"] < coverage["t"] - 0.03, coverage


def test_seed_t_interval_is_mean_plus_minus_t_se_with_satterthwaite_df():
    from scipy import stats

    scores = np.array([[0.1, 0.2, 0.3, 0.2], [0.2, 0.3, 0.5, 0.2], [0.0, 0.1, 0.3, 0.2]])
    vs = scores.mean(axis=1).var(ddof=1) / 3
    vm = scores.mean(axis=0).var(ddof=1) / 4
    df = (vs + vm) ** 2 / (vs ** 2 / 2 + vm ** 2 / 3)
    half = stats.t.ppf(0.975, df) * np.sqrt(vs + vm)
    assert seed_t_interval(scores) == pytest.approx((scores.mean() - half, scores.mean() + half), rel=1e-12)


def test_paired_t_keeps_its_false_positive_rate_with_three_seeds():
    rates = false_positive_rate(3, draws=300, n=60, n_resamples=200, alpha=0.05, seed=1)
    assert rates["t"] <= 0.08, rates
    assert rates["bootstrap"] > rates["t"], rates  # the bootstrap tail is anti-conservative with 3 seeds


def test_holm_on_known_p_values():
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4): ×4, ×3, ×2, ×1 → 0.02, 0.03, 0.06, 0.04 → monotone: 0.06 for the last
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1
    out = holm([0.01, np.nan, 0.02])  # NaN: untested, not counted (m = 2)
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.02]) and np.isnan(out[1])
    assert np.isnan(out[1])


def test_rank_intervals_clear_winner_and_exact_tie():
    rng = np.random.default_rng(0)
    winner = 0.01 + rng.normal(0, 0.001, (3, 50))
    loser = 0.05 + rng.normal(0, 0.001, (3, 50))
    low, high = rank_intervals([loser, winner], n_resamples=500)
    assert (low.tolist(), high.tolist()) == ([2, 1], [2, 1])  # 1–1 for the winner, 2–2 for the other
    low, high = rank_intervals([winner, winner.copy(), loser], n_resamples=500)
    assert (low.tolist(), high.tolist()) == ([1, 1, 3], [2, 2, 3])  # an exact tie: both 1–2
    # close entries with one seed each: the interval spans both ranks
    near = winner[:1] + rng.normal(0, 0.0002, (1, 50))
    low, high = rank_intervals([winner[:1], near], n_resamples=500)
    assert low.tolist() == [1, 1] and high.tolist() == [2, 2]


@pytest.fixture(scope="module")
def seeded_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seeds") / "run"
    assert run_grid(parse_grid(GRID), out=out, executor="local") == 0
    write_report(out)
    return out


def _matrix(rows: pd.DataFrame, label: str) -> np.ndarray:
    return rows[rows.label == label].groupby(["seed", "mixture"])["mse"].mean().unstack().to_numpy()


def test_report_on_two_seeds_shows_seeds_seed_std_and_rank_intervals(seeded_run):
    rows = pd.concat([pd.read_parquet(p) for p in sorted((seeded_run / "cells").glob("*.parquet"))])
    summary = pd.read_csv(seeded_run / "summary.csv").set_index("label")
    # average does not train: one cell serves every seed, and its row says "1 seed" with the mixture bootstrap
    assert summary["n_seeds"].to_dict() == {"average": 1, "fcsae": 2, "fcsae-pit": 2}
    assert np.isnan(summary.loc["average", "mse_seed_std"])
    assert summary.loc["average", ["mse_ci2_low", "mse_ci2_high"]].tolist() == \
        summary.loc["average", ["mse_ci_low", "mse_ci_high"]].tolist()
    for label in ("fcsae", "fcsae-pit"):
        part = rows[rows["label"] == label]
        per_seed = part.groupby("seed")["mse"].mean()
        assert summary.loc[label, "mse_seed_std"] == pytest.approx(per_seed.std(ddof=1), rel=1e-9, abs=1e-15)
        assert summary.loc[label, "psnr_of_mean_mse"] == pytest.approx(-10 * np.log10(part["mse"].mean()), rel=1e-12)
        assert (summary.loc[label, "mse_ci2_low"], summary.loc[label, "mse_ci2_high"]) == pytest.approx(
            seed_t_interval(_matrix(rows, label)), rel=1e-9)
        assert summary.loc[label, "mse_seed_std"] > 0  # two trainings differ
    labels = ["average", "fcsae", "fcsae-pit"]
    low, high = rank_intervals([_matrix(rows, label) for label in labels])  # the report's seed and resamples
    assert summary.loc[labels, "rank_low"].tolist() == low.tolist()
    assert summary.loc[labels, "rank_high"].tolist() == high.tolist()
    assert (low[0], high[0]) == (1, 1)  # average (MSE 0.04) is far ahead of 1-epoch fcsae (0.23): 1–1
    assert {"mse_mean", "mse_ci_low", "mse_ci_high", "psnr_mean"} <= set(summary.columns)  # old names stay
    tests = pd.read_csv(seeded_run / "seed_tests.csv")
    pairs = [("average", "fcsae"), ("average", "fcsae-pit"), ("fcsae", "fcsae-pit")]  # the grid's order
    direct = [paired_t(_matrix(rows, a), _matrix(rows, b)) for a, b in pairs]
    joint = joint_means([_matrix(rows, label) for label in labels])  # one mixture resample, seeds per entry
    for (a, b), (delta, p), adjusted in zip(pairs, direct, holm([p for _, p in direct]), strict=True):
        pair = tests[(tests.a == a) & (tests.b == b)].iloc[0]
        assert (pair.mean_diff, pair.p_t, pair.p_holm) == pytest.approx((delta, p, adjusted), rel=1e-9)
        i, j = labels.index(a), labels.index(b)
        assert pair.p_bootstrap == tail_probability(joint[:, i] - joint[:, j])
        assert pair.n == 40 and (pair.seeds_a, pair.seeds_b) == (1 if a == "average" else 2, 2)
        back = tests[(tests.a == b) & (tests.b == a)].iloc[0]
        assert back.outcome == -pair.outcome and back.mean_diff == -pair.mean_diff
        assert pair.outcome == (0 if adjusted >= 0.01 else -np.sign(delta))
    html = (seeded_run / "report.html").read_text()
    assert "<td>1 seed</td>" in html and "<td>2 seeds</td>" in html
    assert "seed std" in html and "95% CI over seeds" in html and "rank 95%" in html
    assert "PSNR of mean MSE" in html and "mean of per-image PSNR" in html
    assert "Seed-aware comparison (Holm-corrected)" in html and "Holm-corrected, p &lt; 0.01" in html
    ranks = {label: f"{summary.loc[label, 'rank_low']}–{summary.loc[label, 'rank_high']}" for label in summary.index}
    for label, interval in ranks.items():
        assert f"<td class=\"l\">{label}</td>" in html and f"<td>{interval}</td>" in html
