"""The numbers behind seed-aware statistics: two-level resampling (training seeds, then the shared test mixtures),
the interval of an entry's mean over seeds, the paired difference of two entries, rank intervals, Holm's correction.

An entry is a matrix ``(k seeds, n mixtures)`` of per-mixture scores (a mixture's score is the mean over its
sources). Every seed is scored on the *same* test mixtures, so a resample draws the mixtures once and applies
them to every seed (and to every entry on that test set): a mixture's difficulty is shared, not independent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

N_RESAMPLES, LEVEL, CHUNK = 2000, 0.95, 256


def mixture_weights(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """``size`` bootstrap resamples of ``n`` mixtures as weights (counts / n), shape ``(size, n)``."""
    idx = rng.integers(0, n, size=(size, n)) + np.arange(size)[:, None] * n
    return np.bincount(idx.ravel(), minlength=size * n).reshape(size, n) / n


def seed_weights(rng: np.random.Generator, k: int, size: int) -> np.ndarray:
    """``size`` resamples of ``k`` seeds with replacement as weights, shape ``(size, k)``; one seed: all ones."""
    return rng.multinomial(k, np.full(k, 1.0 / k), size=size) / k


def resampled_means(scores: np.ndarray, mix: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The mean of ``scores (k, n)`` under each resample: ``seeds (B, k)`` and ``mix (B, n)`` weights → ``(B,)``."""
    return ((mix @ scores.T) * seeds).sum(axis=1)


def two_level_means(scores: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0) -> np.ndarray:
    """Bootstrap distribution of the mean of ``scores (k, n)``: seeds resampled, then the shared test mixtures."""
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, n_resamples, CHUNK):
        size = min(CHUNK, n_resamples - start)
        out.append(resampled_means(scores, mixture_weights(rng, scores.shape[1], size),
                                   seed_weights(rng, scores.shape[0], size)))
    return np.concatenate(out)


def percentile_interval(scores: np.ndarray, level: float = LEVEL, n_resamples: int = N_RESAMPLES,
                        seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the two-level bootstrap; with one seed, the ordinary bootstrap over mixtures."""
    means = two_level_means(scores, n_resamples, seed)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def _components(scores: np.ndarray) -> tuple[float, float, int, int]:
    """(seed-level variance of the mean, mixture-level variance of the mean, k, n) of ``scores (k, n)``."""
    k, n = scores.shape
    seed_var = float(np.var(scores.mean(axis=1), ddof=1)) / k if k > 1 else 0.0
    mix_var = float(np.var(scores.mean(axis=0), ddof=1)) / n if n > 1 else 0.0
    return seed_var, mix_var, k, n


def _welch_df(parts: Sequence[tuple[float, int]]) -> float:
    """Satterthwaite's degrees of freedom of a sum of variance estimates ``(variance, its df)``."""
    total = sum(v for v, _ in parts)
    denominator = sum(v * v / df for v, df in parts if df > 0 and v > 0)
    return total * total / denominator if denominator > 0 else np.inf


def seed_t_interval(scores: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The interval the report uses for an entry with ≥ 2 seeds: mean ± t·se, where se² adds the variance of the
    seed means (k − 1 df) and of the mixture means (n − 1 df), with Satterthwaite's df. A percentile bootstrap
    over 2–5 seeds under-covers (docs/statistics.md); the t quantile carries the few seeds' uncertainty."""
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    seed_var, mix_var, k, n = _components(scores)
    se = np.sqrt(seed_var + mix_var)
    df = _welch_df([(seed_var, k - 1), (mix_var, n - 1)])
    half = stats.t.ppf(0.5 + level / 2, df) * se
    mean = float(scores.mean())
    return mean - half, mean + half


def paired_t(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(mean difference a − b, two-sided p) of two entries on the same mixtures, ``a (k_a, n)``, ``b (k_b, n)``:
    the seed spread of each entry plus the spread of the per-mixture difference, Satterthwaite's df."""
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    va, _, ka, _ = _components(a)
    vb, _, kb, _ = _components(b)
    diff = a.mean(axis=0) - b.mean(axis=0)
    n = len(diff)
    vm = float(np.var(diff, ddof=1)) / n if n > 1 else 0.0
    delta, se = float(diff.mean()), np.sqrt(va + vb + vm)
    if se == 0:
        return delta, 1.0 if delta == 0 else 0.0
    df = _welch_df([(va, ka - 1), (vb, kb - 1), (vm, n - 1)])
    return delta, float(2 * stats.t.sf(abs(delta) / se, df))


def tail_probability(differences: np.ndarray) -> float:
    """Two-sided tail probability of 0 under resampled differences: the share on the far side of 0, doubled (with
    the +1 of a resampling p-value); 1 when every difference is 0."""
    d = np.asarray(differences, dtype=float)
    if not np.any(d):
        return 1.0
    below, above = (np.sum(d <= 0) + 1) / (len(d) + 1), (np.sum(d >= 0) + 1) / (len(d) + 1)
    return float(min(1.0, 2 * min(below, above)))


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0
                     ) -> tuple[float, float]:
    """(mean difference a − b, two-sided tail probability) from the two-level bootstrap of the paired difference:
    one resample of the shared mixtures for both, seeds resampled per entry."""
    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    means = joint_means([a, b], n_resamples=n_resamples, seed=seed)
    return float(a.mean() - b.mean()), tail_probability(means[:, 0] - means[:, 1])


def joint_means(entries: Sequence[np.ndarray], groups: Sequence[int] | None = None,
                n_resamples: int = N_RESAMPLES, seed: int = 0) -> np.ndarray:
    """Resampled means ``(n_resamples, entries)`` of entries ``(k_e, n)``: entries of one test set (equal
    ``groups``, the same mixtures in the same order) share each resample of mixtures; seeds are resampled per
    entry. Differences of two columns are the paired two-level bootstrap; ranks per row give rank intervals."""
    entries = [np.atleast_2d(np.asarray(e, dtype=float)) for e in entries]
    groups = list(groups) if groups is not None else [0] * len(entries)
    rng = np.random.default_rng(seed)
    chunks = []
    for start in range(0, n_resamples, CHUNK):
        size = min(CHUNK, n_resamples - start)
        mix = {g: mixture_weights(rng, entries[groups.index(g)].shape[1], size) for g in dict.fromkeys(groups)}
        chunks.append(np.stack([resampled_means(e, mix[g], seed_weights(rng, e.shape[0], size))
                                for e, g in zip(entries, groups, strict=True)], axis=1))
    return np.concatenate(chunks)


def rank_intervals(entries: Sequence[np.ndarray], groups: Sequence[int] | None = None, level: float = LEVEL,
                   n_resamples: int = N_RESAMPLES, seed: int = 0, lower_is_better: bool = True
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Each entry's ``level`` interval of its rank (1 = best) over the joint resamples of :func:`joint_means`;
    ties in a resample are broken at random (an exact tie gives both ranks). Returns (low, high) integer arrays."""
    means = joint_means(entries, groups, n_resamples, seed)
    keys = means if lower_is_better else -means
    tiebreak = np.random.default_rng(seed + 1).random(keys.shape)
    order = np.lexsort((tiebreak, keys), axis=-1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(1, keys.shape[1] + 1), keys.shape), axis=-1)
    tail = (1 - level) / 2
    return (np.quantile(ranks, tail, axis=0, method="inverted_cdf").astype(int),
            np.quantile(ranks, 1 - tail, axis=0, method="inverted_cdf").astype(int))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), in the given order; NaN stays NaN and is not
    counted. (statsmodels' ``multipletests(method="holm")`` gives the same; it is not a dependency here.)"""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    present = np.flatnonzero(~np.isnan(p))
    m = len(present)
    if m == 0:
        return out
    order = present[np.argsort(p[present], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out
