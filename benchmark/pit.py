"""Permutation invariance done once: a pairwise cost matrix for any elementwise loss, and one search over it.

The outputs of a separator come in no particular order, so both the PIT training loss and the scorer ask the
same question per mixture: which assignment of outputs to sources costs least? Both build the ``(N, S, S)``
matrix ``cost[n, i, j] = mean over pixels of loss(est[n, i], ref[n, j])`` with :func:`pairwise_cost` and
search it (asteroid's ``PITLossWrapper(pit_from="pw_mtx")`` idea).

The search is exhaustive over the S! assignments up to ``EXHAUSTIVE_MAX_SOURCES`` = 4 (24 assignments, ties to
the identity) and SciPy's Hungarian algorithm (``scipy.optimize.linear_sum_assignment``, O(S³) per mixture)
beyond; both give the optimum (tests hold the Hungarian choice to the exhaustive one at S = 5, 6). Measured
(tests/bench/test_bench_assignment.py, one torch thread of this project's 2-core CPU, 1,000 random cost
matrices): at S = 8 the exhaustive search over 8! = 40,320 assignments takes 5.5 s (and a 1,000 × 40,320 float64
table: 320 MB; 3.2 GB for a 10,000-mixture test set) against 5.9 ms for the Hungarian one, ~900× less; at S = 4
the exhaustive search takes 2.3 ms against 3.7 ms.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch

#: up to this many sources the assignment is searched exhaustively (S! ≤ 24), beyond by the Hungarian algorithm
EXHAUSTIVE_MAX_SOURCES = 4

ElementwiseLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def squared_error(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``(est - ref)²`` per element (its pixel mean is the MSE)."""
    return (est - ref).square_()


def pairwise_cost(est: torch.Tensor, ref: torch.Tensor, loss: ElementwiseLoss,
                  block: int | None = None) -> torch.Tensor:
    """``loss`` (mean over pixels) of every output against every source: ``(N, S_out, S_ref)``.

    ``loss`` maps two tensors of the same shape to per-element losses. ``block`` mixtures at a time keep the
    ``S_out × S_ref`` copies in cache (same values); None computes all at once (as autograd needs for training).
    """
    if block is None:
        n, s_out, s_ref = est.shape[0], est.shape[1], ref.shape[1]
        est_all = est.unsqueeze(2).expand(n, s_out, s_ref, *est.shape[2:])
        ref_all = ref.unsqueeze(1).expand(n, s_out, s_ref, *ref.shape[2:])
        return loss(est_all, ref_all).flatten(3).mean(-1)
    parts = [pairwise_cost(e, r, loss) for e, r in zip(est.split(block), ref.split(block), strict=True)]
    return torch.cat(parts)


def permutation_costs(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every assignment of outputs to sources and its summed cost per mixture.

    Returns ``perms (P, S)`` (``perms[p, s]`` is the output assigned to source ``s``; the identity first) and
    ``totals (N, P)``.
    """
    n_sources = cost.shape[-1]
    perms = torch.tensor(list(itertools.permutations(range(n_sources))), device=cost.device)
    sources = torch.arange(n_sources, device=cost.device)
    totals = torch.stack([cost[:, perm, sources].sum(-1) for perm in perms], dim=1)
    return perms, totals


def exhaustive_permutation(cost: torch.Tensor) -> torch.Tensor:
    """The best assignment ``(N, S)`` by trying all S! of them; ties resolve to the first, the identity."""
    perms, totals = permutation_costs(cost)
    return perms[totals.argmin(dim=1)]


def hungarian_permutation(cost: torch.Tensor) -> torch.Tensor:
    """The best assignment ``(N, S)`` by SciPy's Hungarian algorithm, one mixture at a time on the CPU."""
    from scipy.optimize import linear_sum_assignment  # here: importing scipy.optimize takes a while

    by_source = cost.detach().transpose(1, 2).double().cpu().numpy()  # rows: sources, columns: outputs
    perms = [linear_sum_assignment(matrix)[1] for matrix in by_source]
    return torch.as_tensor(np.stack(perms) if perms else np.zeros((0, cost.shape[-1]), dtype=np.int64),
                           dtype=torch.long, device=cost.device)


def best_permutation(cost: torch.Tensor) -> torch.Tensor:
    """For each mixture, the output assigned to each source ``(N, S)`` at the lowest summed cost.

    Exhaustive up to ``EXHAUSTIVE_MAX_SOURCES`` sources (ties, e.g. identical outputs, resolve to the identity),
    Hungarian beyond.
    """
    if cost.shape[-1] <= EXHAUSTIVE_MAX_SOURCES:
        return exhaustive_permutation(cost)
    return hungarian_permutation(cost)


def min_permutation_cost(cost: torch.Tensor) -> torch.Tensor:
    """The lowest summed cost over all assignments, per mixture ``(N,)`` (differentiable: the PIT loss)."""
    if cost.shape[-1] <= EXHAUSTIVE_MAX_SOURCES:
        return permutation_costs(cost)[1].min(dim=1).values
    perm = hungarian_permutation(cost)  # the assignment is chosen without gradients; its cost carries them
    return torch.gather(cost, 1, perm[:, None, :]).squeeze(1).sum(-1)
