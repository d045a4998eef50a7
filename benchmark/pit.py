"""Permutation invariance done once: a pairwise cost matrix for any elementwise loss, and one search over it.

The outputs of a separator come in no particular order, so both the PIT training loss and the scorer ask the
same question per mixture: which assignment of outputs to sources costs least? Both build the ``(N, S, S)``
matrix ``cost[n, i, j] = mean over pixels of loss(est[n, i], ref[n, j])`` with :func:`pairwise_cost` and
search it with :func:`permutation_costs` (asteroid's ``PITLossWrapper(pit_from="pw_mtx")`` idea).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch

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


def best_permutation(cost: torch.Tensor) -> torch.Tensor:
    """For each mixture, the output assigned to each source ``(N, S)`` at the lowest summed cost.

    Ties (e.g. identical outputs) resolve to the first permutation, the identity.
    """
    perms, totals = permutation_costs(cost)
    return perms[totals.argmin(dim=1)]


def min_permutation_cost(cost: torch.Tensor) -> torch.Tensor:
    """The lowest summed cost over all assignments, per mixture ``(N,)`` (differentiable: the PIT loss)."""
    return permutation_costs(cost)[1].min(dim=1).values
