"""Coverage of the interval choices on synthetic scores with a known mean: what decided the report's interval.

Scores follow a crossed random-effects model, as a benchmark's are: ``x[s, m] = μ + a_s + b_m + e_sm`` with a seed
effect ``a`` (σ_seed), a mixture difficulty ``b`` shared by every seed (σ_mix) and an interaction ``e`` (σ_noise).
Each draw makes fresh seeds and a fresh test set; an interval covers when it holds μ.
"""

from __future__ import annotations

import numpy as np

from sepbench.report.seeds.bootstrap import paired_bootstrap, paired_t, percentile_interval, seed_t_interval


def synthetic_scores(rng: np.random.Generator, k: int, n: int, mean: float = 0.03, seed_sd: float = 0.002,
                     mix_sd: float = 0.01, noise_sd: float = 0.003, mix: np.ndarray | None = None) -> np.ndarray:
    """One entry's ``(k, n)`` scores under the crossed model (``mix``: the test set's difficulties, if shared)."""
    b = rng.normal(0, mix_sd, n) if mix is None else mix
    return mean + rng.normal(0, seed_sd, (k, 1)) + b[None, :] + rng.normal(0, noise_sd, (k, n))


def interval_coverage(k: int, draws: int = 400, n: int = 100, n_resamples: int = 400, seed: int = 0,
                      **model: float) -> dict[str, float]:
    """Share of ``draws`` in which each interval holds the true mean: ``bootstrap`` (two-level percentile) and
    ``t`` (the report's choice for k ≥ 2)."""
    rng = np.random.default_rng(seed)
    mean = model.pop("mean", 0.03)
    hits = {"bootstrap": 0, "t": 0}
    for draw in range(draws):
        scores = synthetic_scores(rng, k, n, mean, **model)
        low, high = percentile_interval(scores, n_resamples=n_resamples, seed=draw)
        hits["bootstrap"] += low <= mean <= high
        if k > 1:
            low, high = seed_t_interval(scores)
            hits["t"] += low <= mean <= high
    return {name: count / draws for name, count in hits.items() if k > 1 or name == "bootstrap"}


def false_positive_rate(k: int, draws: int = 400, n: int = 100, n_resamples: int = 400, alpha: float = 0.05,
                        seed: int = 0, **model: float) -> dict[str, float]:
    """Share of ``draws`` in which the paired tests call two equal entries (same mean, same test set) different
    at ``alpha``: ``bootstrap`` (two-level tail probability) and ``t``."""
    rng = np.random.default_rng(seed)
    hits = {"bootstrap": 0, "t": 0}
    for draw in range(draws):
        shared = rng.normal(0, model.get("mix_sd", 0.01), n)
        a = synthetic_scores(rng, k, n, mix=shared, **{**model, "mix_sd": 0.0})
        b = synthetic_scores(rng, k, n, mix=shared, **{**model, "mix_sd": 0.0})
        hits["bootstrap"] += paired_bootstrap(a, b, n_resamples, seed=draw)[1] < alpha
        hits["t"] += paired_t(a, b)[1] < alpha
    return {name: count / draws for name, count in hits.items()}
